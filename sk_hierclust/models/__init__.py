"""The models, one module each: TreeVAE, HCRL, VLAC, HTVAE."""
