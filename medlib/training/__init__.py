"""Training (notebooks 20 and 30): SFT, GRPO, rollouts, multi-process launch and the rewards."""
