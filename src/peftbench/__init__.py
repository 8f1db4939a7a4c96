"""peftbench: a fair tournament of parameter-efficient fine-tuning techniques.

Every technique runs on the same base model, data, training code, hardware and tuning budget,
and is measured on many axes (test score, memory, time, checkpoint size, forgetting, ...).
"""

__version__ = "0.1.0"
