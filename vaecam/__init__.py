"""vaecam: VAE attention maps (Liu et al., CVPR 2020) as a plain PyTorch library.

The library knows nothing of Ray or MLflow; ``orchestrator`` composes it with them.
"""

__version__ = "0.1.0"
