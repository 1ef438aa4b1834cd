"""What File ▸ Open should open for a picked path: a Hugging Face folder's files stand for the
folder, so picking config.json (or the tokenizer) opens the model; a shard index opens as itself."""

from __future__ import annotations

from pathlib import Path

#: files of a Hugging Face folder that are not weights; picking one opens the folder
FOLDER_FILES = ("config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

MODEL_FILTER = ("Models and Hugging Face folders (*.safetensors *.gguf *.bin *.pt *.pth "
                "config.json *.index.json);;"
                "safetensors (*.safetensors *.safetensors.index.json);;"
                "Hugging Face folder (config.json);;"
                "PyTorch (*.bin *.pt *.pth *.bin.index.json);;GGUF (*.gguf);;All files (*)")


def model_path_for(picked: str | Path) -> Path:
    """The folder for a picked folder file (config.json, the tokenizer), else the
    file itself; the readers then choose the format from the file's content."""
    path = Path(picked)
    if path.is_file() and path.name in FOLDER_FILES:
        return path.parent
    return path
