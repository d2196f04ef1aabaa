"""Crab Studio's Gradio app: a thin shell (``ui``, ``handlers``) over pure, tested render functions
(``render``, ``views``, ``present``, ``analysis``) and the model-side ``engine``."""
