"""Measuring: accuracy and abstention of a Recognizer on labelled images, the abstention
threshold (`calibrate`), and the SVM / MLP / CNN comparison study. Never imported by serving."""
