"""How the simulated RNA and ATAC counts depend on the latent state: two different nonlinear maps.

RNA is smooth: each gene's log-rate is a random combination of random Fourier features ``cos(w . z + c)`` of the
latent position (length scale ``RNA_LENGTH_SCALE``); a few genes instead follow the proliferation or the death
rate (programs a growth prior can score). Counts are Poisson around ``library size * softmax(log-rates)``.

ATAC is switch-like and primed: each peak opens along a steep sigmoid of a random direction of the position the
cell is heading to, ``z + ATAC_PRIMING * drift(z)`` (chromatin opening ahead of expression). Counts are Poisson
around ``depth * open probability``, mostly 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ._dynamics import Bifurcation

RNA_N_FEATURES, RNA_LENGTH_SCALE, RNA_AMPLITUDE = 30, 1.0, 2.0
RNA_LIBRARY_MEAN, RNA_LIBRARY_SD = 1500.0, 0.3  # log-normal library size
PROGRAM_GAIN = 1.5  # log-fold change of a program gene per unit of its rate
PROGRAMS = ("latent", "proliferation", "apoptosis")
ATAC_PRIMING, ATAC_FLOOR = 0.5, 0.01
ATAC_DEPTH_SD = 0.3
LATENT_BOX = ((-2.3, 2.0), (-1.2, 1.2))  # where peak switches are placed: the region the cells visit


@dataclass(frozen=True)
class RnaMap:
    """Random smooth map from the latent state to gene expression rates."""

    frequencies: np.ndarray  # features x 2
    phases: np.ndarray  # features
    weights: np.ndarray  # genes x features
    baseline: np.ndarray  # genes
    program: np.ndarray  # genes, index into PROGRAMS

    @classmethod
    def draw(cls, n_genes: int, rng: np.random.Generator) -> RnaMap:
        """A map for ``n_genes`` genes; ``n_genes // 20`` (at least 1) genes per growth program."""
        n_program = max(1, n_genes // 20)
        program = np.zeros(n_genes, dtype=int)
        program[:n_program], program[n_program : 2 * n_program] = 1, 2
        return cls(
            frequencies=rng.standard_normal((RNA_N_FEATURES, 2)) / RNA_LENGTH_SCALE,
            phases=rng.uniform(0.0, 2.0 * np.pi, RNA_N_FEATURES),
            weights=rng.standard_normal((n_genes, RNA_N_FEATURES)) * RNA_AMPLITUDE / np.sqrt(RNA_N_FEATURES),
            baseline=rng.standard_normal(n_genes),
            program=program,
        )

    def profile(self, z: np.ndarray, dyn: Bifurcation) -> np.ndarray:
        """Noise-free expression profile (cells x genes, rows sum to 1)."""
        features = np.cos(z @ self.frequencies.T + self.phases)
        log_rate = self.baseline + features @ self.weights.T
        birth, death = dyn.rates(z)
        for code, rate in ((1, birth), (2, death)):
            genes = self.program == code
            log_rate[:, genes] = self.baseline[genes] + PROGRAM_GAIN * rate[:, None]
        log_rate -= log_rate.max(axis=1, keepdims=True)
        rate = np.exp(log_rate)
        return rate / rate.sum(axis=1, keepdims=True)

    def sample(self, z: np.ndarray, dyn: Bifurcation, rng: np.random.Generator) -> sparse.csr_matrix:
        """Poisson counts with log-normal library sizes."""
        library = RNA_LIBRARY_MEAN * rng.lognormal(-0.5 * RNA_LIBRARY_SD**2, RNA_LIBRARY_SD, len(z))
        return sparse.csr_matrix(rng.poisson(library[:, None] * self.profile(z, dyn)).astype(np.float32))


@dataclass(frozen=True)
class AtacMap:
    """Random switch-like map from the primed latent state to peak opening probabilities."""

    directions: np.ndarray  # peaks x 2, unit vectors
    thresholds: np.ndarray  # peaks
    slopes: np.ndarray  # peaks
    open_max: np.ndarray  # peaks

    @classmethod
    def draw(cls, n_peaks: int, rng: np.random.Generator) -> AtacMap:
        """A map for ``n_peaks`` peaks, each switching somewhere inside ``LATENT_BOX``."""
        angle = rng.uniform(0.0, 2.0 * np.pi, n_peaks)
        directions = np.column_stack([np.cos(angle), np.sin(angle)])
        anchors = np.column_stack([rng.uniform(lo, hi, n_peaks) for lo, hi in LATENT_BOX])
        return cls(
            directions=directions,
            thresholds=np.einsum("pd,pd->p", directions, anchors),
            slopes=rng.uniform(3.0, 8.0, n_peaks),
            open_max=rng.uniform(0.3, 0.9, n_peaks),
        )

    def open_probability(self, z: np.ndarray, dyn: Bifurcation, lead=None) -> np.ndarray:
        """Noise-free opening probability (cells x peaks).

        ``lead``: ``(fate, duration)`` in the fate-driven mode, where chromatin shows the state a cell will reach
        ``duration`` ahead on its fate's branch (:meth:`Bifurcation.ahead`) instead of its primed position.
        """
        primed = z + ATAC_PRIMING * dyn.drift(z) if lead is None else dyn.ahead(z, *lead)
        switch = 0.5 * (1.0 + np.tanh(0.5 * self.slopes * (primed @ self.directions.T - self.thresholds)))
        return ATAC_FLOOR + (self.open_max - ATAC_FLOOR) * switch

    def sample(self, z: np.ndarray, dyn: Bifurcation, rng: np.random.Generator, lead=None) -> sparse.csr_matrix:
        """Poisson fragment counts with log-normal per-cell depth (``lead``: see :meth:`open_probability`)."""
        depth = rng.lognormal(-0.5 * ATAC_DEPTH_SD**2, ATAC_DEPTH_SD, len(z))
        opened = self.open_probability(z, dyn, lead)
        return sparse.csr_matrix(rng.poisson(depth[:, None] * opened).astype(np.float32))
