"""The models: the BERT teacher, the BiLSTM and tiny-BERT students, their settings, saved formats, NumPy
serving runtime and the prediction contract. Loading and serving a model needs nothing from
:mod:`rasa_kd.distill` (the trainer) and nothing from Rasa."""
