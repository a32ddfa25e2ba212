"""Rankers composed from the layers, selected by the config."""
