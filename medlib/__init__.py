"""medlib: fine-tune, run and measure medical vision-language models from notebooks."""
