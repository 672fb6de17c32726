"""Data for training and measuring: MNIST (IDX files, verified fetch) and `synth`, MNIST digits
rendered the way real input arrives (canvas, paper, photo, pens). Never imported by serving."""
