"""Pipeline (every notebook): experiment config, the papermill runner, sweeps, Slurm, results, leaderboard, rendering."""
