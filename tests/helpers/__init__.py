"""Test helpers: models and files the tests build on the spot (no downloads).

- ``raw_checkpoints``: llama-shaped safetensors folders written with numpy alone
- ``tiny_models``: Hugging Face folders with real tokenizers (llama / mistral / qwen2, BERT)
- ``trained_lm``: a small llama trained on the embedded corpus and cached, for KL / perplexity
- ``fuzz_targets``: mutated real files for every reader (tests/test_fuzz.py, the campaign script)
"""
