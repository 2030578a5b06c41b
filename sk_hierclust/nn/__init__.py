"""Torch building blocks shared by the models: node-batched layers, encoders, losses."""
