"""Model size presets and configs, apart from the objectives that train them."""
