"""Error-compensating quantizers that pick every value themselves (GPTQ), on ggml grids and
on the integer grid of Hugging Face GPTQ checkpoints. Plain Python and torch, no Qt."""
