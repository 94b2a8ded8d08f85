"""Loss functions of the scribble methods: pure tensor functions, one module per family."""
