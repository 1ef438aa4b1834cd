"""Exporters: GGUF (llama.cpp) and NNEF (tract), each a streaming job over a Model and a Plan."""
