"""ipywidgets views over the core: no logic of their own."""
