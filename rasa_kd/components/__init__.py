"""Rasa 3.6 graph components; each module registers one component with Rasa's recipe."""
