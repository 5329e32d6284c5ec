"""ReBaPL (Bendou et al., arXiv 2511.17339): repulsive cyclical SGHMC sampling of any prompt learner's parameters.

The base learner's parameters theta form a Markov chain run by SGHMC (clipbayes/sampling/sghmc.py) on

    U(theta) = L(theta) + xi / (d(z(theta)[I], z(theta_k)[I]) + 1e-6)

L the base's own loss (likelihood and regularisers), theta_k the newest collected sample, z(theta) (M' + T, E) the
representation: the unit-norm features of M fixed training images (rows kept only when the base prompts the image
tower: frozen rows cannot move) and the class text features the model compares them with (T = C, or M C for
image-conditioned prompts; a posterior's mean, not a draw); I: n rows drawn at every step; d: mse | wasserstein |
mmd | procrustes (clipbayes/sampling/distances.py). The repulsion enters the gradient only, each parameter
tensor's part skipped when it is not finite in the tensor's dtype (as the official code); d is logged.

Per 0-based epoch e (cycle length L, S noise epochs): a warm-up epoch, then cosine step sizes restarting every L
epochs; SGHMC noise in the last S epochs of each cycle; K samples kept per cycle (the last step of the cycle for
K = 1); the next cycle continues from the chain (sequential) or restarts from the initial prompts (parallel).

Prediction with the samples theta_1..theta_K (before the first one: the chain's own):

    predictive    p(y | x) = (1/K) sum_k softmax(f_k(x)):  (K, B, C) logits, (K L, B, C) for a Monte Carlo base
    mean_logits   softmax((1/K) sum_k f_k(x))  (the official code)

For a base that prompts the image tower, each sample has its own image feature: ``encode_images`` gives the K
features side by side, (B, K E), and sample k reads its own.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from clipbayes import registry
from clipbayes.config import Check, ConfigError, Key, at_least, check_base_learner, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import LossOutput, WrappedModel
from clipbayes.modeling.precision import autocast
from clipbayes.objectives import predictive_scores
from clipbayes.sampling import (REPULSION_DISTANCES, SGHMC, CyclicalMultiplier, SampleChain, in_sampling_phase,
                                is_sample_step, representation_distance)
from clipbayes.sampling.distances import POTENTIAL_EPS
from clipbayes.sampling.sghmc import RESTARTS

PREDICTIONS = ("predictive", "mean_logits")
NOISE_SEED_OFFSET = 2 ** 31  # the noise generator's seed is SEED + this: a stream apart from torch's global one

# Defaults: the official main config (configs/trainers/CSGHMC_CR_MAPLE/vit_b16.yaml) and train.py.
KEYS = {
    "BASE": Key("MaPLe", "the prompt learner whose parameters are sampled: any registered method with a learner "
                         "(clipbayes.registry.base_learners())"),
    "CYCLE_EPOCHS": Key(5, "L: epochs per cycle (official CYCLE_LENGTH); OPTIM.MAX_EPOCH is a multiple of it",
                        check=at_least(1)),
    "NOISE_EPOCHS": Key(3, "S: SGHMC noise in the last S epochs of each cycle (official NOISE_LAST_EPOCHS); 0: none, "
                           ">= L: every epoch",
                        check=at_least(0)),
    "TEMPERATURE": Key(100.0, "T: the noise's scale, std T sqrt(2 lr momentum) / N_train (official "
                              "NOISE_TEMPERATURE; train.py's default 1.0)", check=at_least(0, integer=False)),
    "SAMPLES_PER_CYCLE": Key(1, "K: samples kept per cycle (official SAMPLES_PER_CYCLE)", check=at_least(1)),
    "CHAINS": Key("sequential", "sequential: a cycle continues from the last one's end; parallel: it restarts from "
                                "the initial prompts with a fresh optimizer (official CHAINS)", choices=RESTARTS),
    "REPULSION_STRENGTH": Key(0.75, "xi of the repulsion xi / (d + 1e-6) from the newest sample; 0: none",
                              check=at_least(0, integer=False)),
    "REFERENCE_IMAGES": Key(128, "M: training images whose features enter the representation (official "
                                 "REF_SAMPLES), test-time transform", check=at_least(1)),
    "REPULSION_ROWS": Key(5, "n: representation rows compared at each step (official REPULSION.BATCH_SIZE); "
                             "-1: all", check=Check(lambda v: isinstance(v, int) and not isinstance(v, bool)
                                                    and (v == -1 or v >= 1), "-1 or an integer >= 1")),
    "DISTANCE": Key("mse", "d of the repulsion (official DISTANCE_TYPE)", choices=REPULSION_DISTANCES),
    "PREDICTION": Key("predictive", "predictive: the mean of the samples' softmax, (K, B, C) logits; mean_logits: "
                                    "the softmax of their mean logits (the official code)", choices=PREDICTIONS),
    **precision_key("fp16"),
}


class ReBaPLModel(WrappedModel):
    """The base model, its learner inside a ``SampleChain`` (the learner of this model), the reference images."""

    def __init__(self, base, strength: float, rows: int, distance: str, prediction: str):
        super().__init__(base)
        self.learner = SampleChain(base.learner)
        self.strength, self.rows, self.distance, self.prediction = strength, rows, distance, prediction
        self.register_buffer("reference_images", None, persistent=False)
        self.register_buffer("reference_features", None, persistent=False)

    @property
    def samples_image_features(self) -> bool:
        """Whether each sample has its own image features (the base prompts the image tower) once samples exist."""
        return self.base.learned_image_features and self.learner.num_samples > 0

    # --- the representation and the repulsion --------------------------------------------------------------------
    @torch.no_grad()
    def attach_reference_images(self, images: torch.Tensor) -> None:
        """The M fixed training images (M, 3, H, W) of the representation; their features once if frozen."""
        self.reference_images = images
        if not self.base.learned_image_features:
            self.reference_features = self.base.encode_images(images)

    def representation(self) -> torch.Tensor:
        """z(theta) (M' + T, E) of the chain's current parameters (module docstring)."""
        if self.reference_images is None:
            raise RuntimeError("ReBaPL's representation needs the reference images: attach_reference_images first")
        if self.base.learned_image_features:
            image_features = self.base.encode_images(self.reference_images)
            rows = [image_features.float()]
        else:
            image_features, rows = self.reference_features, []
        text = self.base.reference_text_features(image_features)
        return torch.cat(rows + [text.reshape(-1, text.shape[-1]).float()])

    def representation_rows(self, chosen: torch.Tensor) -> torch.Tensor:
        """z(theta)[chosen] (n, E). With prompted image features and class features that do not depend on the
        image, only the chosen reference images go through the image tower (n passes, not M); else the rows of
        the whole representation."""
        count = len(self.reference_images)
        if not self.base.learned_image_features:
            return self.representation()[chosen]
        is_image = chosen < count
        image_features = (self.base.encode_images(self.reference_images[chosen[is_image]]) if is_image.any()
                          else self.learner.anchor.new_zeros(0, self.learner.anchor.shape[1]))
        text = self.base.reference_text_features(image_features)
        if text.shape[:-2].numel() != 1:  # image-conditioned class features: every image's rows
            return self.representation()[chosen]
        text_rows = text.reshape(-1, text.shape[-1])[chosen[~is_image] - count]
        rows = torch.cat([image_features.float(), text_rows.float()])
        order = torch.cat([is_image.nonzero().squeeze(1), (~is_image).nonzero().squeeze(1)])
        return rows[torch.argsort(order)]

    def repulsion(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(xi / (d + 1e-6), d) with d = d(z[I], z_k[I]), n rows I drawn from torch's global generator."""
        anchor = self.learner.anchor
        if 0 < self.rows < anchor.shape[0]:
            chosen = torch.randperm(anchor.shape[0])[:self.rows].to(anchor.device)
            current, anchor = self.representation_rows(chosen), anchor[chosen]
        else:
            current = self.representation()
        distance = representation_distance(self.distance, current, anchor)
        return self.strength / (distance + POTENTIAL_EPS), distance

    def train_loss(self, images, labels) -> LossOutput:
        """The base's loss; once a sample exists, plus the repulsion's gradient, tensor by tensor, as the official
        code adds it (``finite_gradient_surrogate``). Its value is not added: the potential is xi / 1e-6 on the
        first step after a sample, where the chain sits on the anchor."""
        out = self.base.train_loss(images, labels)
        if self.strength == 0 or self.learner.num_samples == 0:
            return out
        potential, distance = self.repulsion()
        params = [p for p in self.learner.parameters() if p.requires_grad]
        surrogate, dropped = finite_gradient_surrogate(potential, params)
        parts = {**out.parts, "repulsion_d": distance.item()}
        if dropped:
            parts["repulsion_dropped"] = float(dropped)
        return LossOutput(out.loss + surrogate, out.scores, parts)

    @torch.no_grad()
    def collect_sample(self, epoch: int) -> None:
        """Keep the chain's parameters as a sample, with their representation as the new anchor."""
        anchor = self.representation() if self.strength > 0 else self.learner.anchor
        self.learner.collect(epoch, anchor)

    # --- prediction: the samples' ensemble ------------------------------------------------------------------------
    def members(self):
        """Context of each sample k in turn: its parameters loaded, its own evaluation-cache entries."""
        for k in range(self.learner.num_samples):
            with self.learner.loaded(k), self.base.cache_scope(("rebapl sample", k)):
                yield k

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, E), or (B, K E) when each sample prompts the image tower."""
        if not self.samples_image_features:
            return self.base.encode_images(images)
        return torch.cat([self.base.encode_images(images) for _ in self.members()], dim=-1)

    def predict_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """(K, B, C) (or (K L, B, C)) logits of the samples, their mean (B, C) for mean_logits; the chain's own
        prediction before the first sample."""
        if self.learner.num_samples == 0:
            return self.base.predict_logits(image_features)
        per_sample = image_features.unflatten(-1, (self.learner.num_samples, -1)) \
            if self.samples_image_features else None
        logits = []
        for k in self.members():
            logits.append(self.base.predict_logits(image_features if per_sample is None else per_sample[:, k]))
        logits = torch.stack(logits)
        logits = logits.flatten(0, 1) if logits.dim() == 4 else logits
        return logits.mean(0) if self.prediction == "mean_logits" else logits

    def predict_features(self, image_features: torch.Tensor) -> torch.Tensor:
        return predictive_scores(self.predict_logits(image_features))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict_features(self.encode_images(images))


def finite_gradient_surrogate(potential: torch.Tensor, params: list) -> tuple[torch.Tensor, int]:
    """(s, dropped): a scalar of value 0 whose gradient is dV/dtheta for every parameter tensor where that gradient
    is finite in the parameter's dtype, and 0 for the ``dropped`` others (the official code computes the
    repulsion's gradients apart and skips a non-finite one: with fp16 parameters, the huge gradients of the first
    steps after a sample, xi / (d + 1e-6)^2 with d near 0, overflow and are skipped; in fp32 they are applied)."""
    grads = torch.autograd.grad(potential, params, allow_unused=True)
    kept = [(p, g) for p, g in zip(params, grads) if g is not None and torch.isfinite(g).all()]
    dropped = sum(g is not None for g in grads) - len(kept)
    surrogate = sum(((p * g.detach()).sum() for p, g in kept), potential.new_zeros(()))
    return surrogate - surrogate.detach(), dropped


def check_rebapl(cfg, node) -> None:
    check_base_learner("REBAPL", node.BASE)
    if cfg.TRAINER.NAME != "ReBaPL":  # the optimiser keys are another trainer's
        return
    epochs, cycle = cfg.OPTIM.MAX_EPOCH, node.CYCLE_EPOCHS
    if epochs < cycle or epochs % cycle:
        raise ConfigError(f"OPTIM.MAX_EPOCH ({epochs}) must be a multiple of TRAINER.REBAPL.CYCLE_EPOCHS ({cycle}): "
                          f"samples are kept at the end of each cycle, and a last partial cycle would keep none")
    if cfg.OPTIM.NAME not in ("sghmc", "sgd"):
        raise ConfigError(f"ReBaPL samples with SGHMC (OPTIM.NAME 'sghmc'; 'sgd' is read the same); got "
                          f"OPTIM.NAME {cfg.OPTIM.NAME!r}")
    if cfg.OPTIM.WARMUP_EPOCH not in (0, 1) or (cfg.OPTIM.WARMUP_EPOCH and cfg.OPTIM.WARMUP_TYPE != "constant"):
        raise ConfigError(f"ReBaPL's schedule has one constant warm-up epoch at OPTIM.WARMUP_CONS_LR (the official "
                          f"one: OPTIM.WARMUP_EPOCH 1, WARMUP_TYPE constant) or none (WARMUP_EPOCH 0); got "
                          f"{cfg.OPTIM.WARMUP_EPOCH}, {cfg.OPTIM.WARMUP_TYPE!r}")


def build_rebapl_model(cfg, node, clip_model, classnames) -> ReBaPLModel:
    base = registry.get_method(node.BASE).trainer.make_prompt_model(cfg, clip_model, classnames)
    print(f"ReBaPL around {node.BASE}: cycles of {node.CYCLE_EPOCHS} epochs, noise in the last {node.NOISE_EPOCHS}, "
          f"{node.SAMPLES_PER_CYCLE} sample(s) per cycle, {node.CHAINS} chains, repulsion {node.REPULSION_STRENGTH} "
          f"({node.DISTANCE})")
    return ReBaPLModel(base, node.REPULSION_STRENGTH, node.REPULSION_ROWS, node.DISTANCE, node.PREDICTION)


@registry.register_method(node="REBAPL", keys=KEYS, build=build_rebapl_model, wraps_base=True, check=check_rebapl)
class ReBaPL(PromptTrainer):
    """ReBaPL: repulsive cyclical SGHMC over a base prompt learner; predicts with the samples' ensemble."""

    def build_optimization(self, learner):
        """SGHMC with a seeded noise generator (its state is in the optimizer's checkpoint) and the cyclical
        step size (clipbayes.sampling.sghmc)."""
        node, optim_cfg = self.method_cfg, self.cfg.OPTIM
        generator = torch.Generator(device=self.device)
        generator.manual_seed((self.cfg.SEED if self.cfg.SEED >= 0 else torch.initial_seed()) + NOISE_SEED_OFFSET)
        optim = SGHMC(learner.parameters(), lr=optim_cfg.LR, momentum=optim_cfg.MOMENTUM,
                      weight_decay=optim_cfg.WEIGHT_DECAY, temperature=node.TEMPERATURE,
                      dataset_size=len(self.dm.dataset.train_x), generator=generator)
        schedule = CyclicalMultiplier(optim_cfg.LR, node.CYCLE_EPOCHS, optim_cfg.WARMUP_CONS_LR, node.CHAINS,
                                      warmup=optim_cfg.WARMUP_EPOCH == 1)
        return optim, LambdaLR(optim, schedule)

    def before_train(self):
        if self.method_cfg.REPULSION_STRENGTH > 0:
            self.attach_reference_images()
        super().before_train()

    @torch.no_grad()
    def attach_reference_images(self):
        """M training images drawn with a generator seeded by SEED, under the test-time transform: the same set
        in a resumed run."""
        items = self.dm.dataset.train_x
        generator = torch.Generator().manual_seed(max(self.cfg.SEED, 0))
        chosen = torch.randperm(len(items), generator=generator)[:self.method_cfg.REFERENCE_IMAGES].tolist()
        images = self.test_time_images([items[i] for i in chosen])
        with autocast(self.precision, self.device):
            self.model.attach_reference_images(images)
        print(f"ReBaPL: {len(chosen)} reference images for the repulsion")

    def before_epoch(self):
        super().before_epoch()
        node = self.method_cfg
        if node.CHAINS == "parallel" and self.epoch > 0 and self.epoch % node.CYCLE_EPOCHS == 0:
            self.model.learner.restart()
            self.optim.state.clear()
            print(f"ReBaPL: parallel chains: cycle {self.epoch // node.CYCLE_EPOCHS + 1} restarts from the initial "
                  f"prompts")
        self.optim.set_noise(in_sampling_phase(self.epoch, node.CYCLE_EPOCHS, node.NOISE_EPOCHS))

    def forward_backward(self, batch):
        summary = super().forward_backward(batch)
        node, chain = self.method_cfg, self.model.learner
        cycle = self.epoch // node.CYCLE_EPOCHS
        collected = int((chain.sample_epochs // node.CYCLE_EPOCHS == cycle).sum())
        if is_sample_step(self.epoch, self.batch_idx, self.num_batches, node.CYCLE_EPOCHS, node.NOISE_EPOCHS,
                          node.SAMPLES_PER_CYCLE, collected):
            with autocast(self.precision, self.device):
                self.model.collect_sample(self.epoch)
            print(f"ReBaPL: sample {chain.num_samples} kept after epoch {self.epoch + 1}, batch {self.batch_idx + 1}")
        return summary
