"""Model sources beyond timm and torchvision, one module each (``hf``: Hugging Face transformers)."""
