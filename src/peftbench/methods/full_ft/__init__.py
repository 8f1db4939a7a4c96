"""Memory-efficient full-parameter and partial fine-tuning: contestants beside the adapters.

The question users face is not only "which adapter?" but "an adapter, or full fine-tuning that
fits in the same memory?". These techniques train the base model's own weights, each with the
optimizer of its well-kept package (the optional extra ``peftbench[full-ft]``):

- GaLore (``galore-torch``): AdamW whose moments live in a low-rank projection of each linear
  weight's gradient; also layer-wise (each weight updated during the backward pass, its
  gradient freed at once) and 8-bit (GPU only);
- APOLLO and APOLLO-Mini (``apollo-torch``): AdamW-like, with moments of a random projection
  scaling the raw gradient per channel (or per tensor);
- BAdam (``badam``): block-coordinate Adam, one decoder block trainable at a time;
- Adam-mini (``adam-mini``): Adam with one second-moment value per block (head, neuron);
- LOMO and AdaLomo (``lomo-optim``): SGD (or Adafactor-like) fused into the backward pass;
- freeze tuning: only the last N layers (or chosen modules) trainable, with AdamW.

`entries` defines the catalog entries (no torch at import); the optimizers live in their own
modules, imported when a run builds them. Every optimizer reports the bytes it really holds
(``trainable_state_bytes``: parameters, gradients at their peak, optimizer state) to the
memory breakdown. Checkpoints are the model's weights, or only the tensors that were trained
(freeze tuning, BAdam), and export to LoRA factorizes trained − base like full fine-tuning.
"""

from peftbench.methods.full_ft.entries import EXTRA, full_ft_methods

__all__ = ["EXTRA", "full_ft_methods"]
