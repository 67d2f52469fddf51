// placeholder so the library has a source until the loader lands
