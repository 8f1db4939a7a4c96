"""Delta-LoRA (Zi et al., 2023): LoRA that also moves the frozen weights by the change of B·A.

After a warm-up of K optimizer steps, every step adds λ·(B(t+1)A(t+1) − B(t)A(t))·(α/r) to the
frozen weight W, without a gradient or optimizer state for W; the LoRA path has no dropout.
Split like a PEFT tuner: `config` (fields), `layer` (the adapted linear layer), `model` (wrapping
a base model, save/load), `method` (the catalog entry), and it registers itself in the catalog
below, as a technique from another package would (the catalog imports this package when it is
first used; `method` imports no torch, so that stays fast).
"""

from peftbench.methods import register_method
from peftbench.methods.delta_lora.method import DeltaLoraMethod

__all__ = ["DeltaLoraMethod"]

register_method(DeltaLoraMethod())
