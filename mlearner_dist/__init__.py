"""mlearner-dist: the M-learner for heterogeneous total and mediated treatment effects at scale.

Li, Liu, Jiang, Xia, Hobbs, Wei, "M-learner: A Flexible And Powerful Framework To Study
Heterogeneous Treatment Effect In Mediation Model", arXiv 2505.17917.
"""

__version__ = "0.1.0"
