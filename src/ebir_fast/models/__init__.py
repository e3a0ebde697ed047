"""Model components: the tagger (RAM Swin-L + Query2Label head + DAPE LoRA) and its backbone.

Import the submodules directly (``ebir_fast.models.tagger``, ``.ram``, ``.swin``); this package
file stays minimal so that other model work can add to it without touching these imports.
"""
