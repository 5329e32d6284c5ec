"""BayesianPrompt (Derakhshani et al., ICCV 2023): CoOp's context plus a random residual with a Gaussian posterior.

    t_c(r) = [SOS][p_1 + r ... p_M + r][name_c][.][EOT],      r in R^D shared by all classes
    q(r)     = N(mu, diag(e^l))                                 unconditional: mu, l learned vectors
    q(r | x) = N(mu_phi(f), diag(e^{l_phi(f)}))                 conditional: two MLPs of the image feature f
    r_l      = mu + eps_l * exp(l / 2),   eps_l ~ N(0, I),   l = 1..L
    logits_l[b, c] = exp(logit_scale) * f(x_b) . g(t_c(r_l))
    loss     = -(1/B) sum_b log((1/L) sum_l softmax(logits_l[b])[y_b]) + beta * KL(q || N(0, I))
    predict  = logits_l (L, B, C) of L samples (predictive log((1/L) sum_l softmax(logits_l))), or the
               logits at r = mu; unconditional r_l drawn per test batch, or once per evaluation and shared
               by every test image (TEST.MC_DRAWS)

The KL is averaged over the D dimensions, then over the batch (conditional); ``train_logits`` hands the L logits
and beta * KL to the shared likelihood loss. Prompts are encoded in one text pass: L x C sequences per step
(unconditional, shared by the batch) or B x L x C (conditional).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from clipbayes.config import Key, at_least, context_keys, ordered_pair, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context, prompt_model_kwargs
from clipbayes.objectives import gaussian_kl_to_standard_normal, gaussian_samples
from clipbayes.registry import register_method

KEYS = {
    **context_keys(n_ctx=4, ctx_init="a photo of a"),
    **precision_key("fp16"),
    "POSTERIOR": Key("unconditional", "q(r) (unconditional) or q(r | x) (conditional)",
                     choices=("unconditional", "conditional")),
    "N_SAMPLES_TRAIN": Key(10, "L, Monte Carlo samples of r per training step", check=at_least(1),
                           monte_carlo=True),
    "N_SAMPLES_TEST": Key(10, "L at prediction", check=at_least(1), monte_carlo=True),
    "KL_WEIGHT": Key(0.001, "beta, weight of KL(q || N(0, I))", check=at_least(0, integer=False)),
    "INIT_LOGVAR_RANGE": Key((0.0, 1.0), "unconditional log-variance init U[low, high); (-10.0, -10.0) is a "
                                         "constant", check=ordered_pair()),
    "PREDICTION": Key("mc", "mc: MC predictive over fresh samples | mean: posterior mean r = mu (one text pass)",
                      choices=("mc", "mean")),
}


class ResidualContext(nn.Module):
    """Context ``ctx`` (M, D) shifted by residuals: context(r (S, L, D)) -> (S, L, 1, M, D)."""

    image_conditioned = False

    def __init__(self, ctx: torch.Tensor):
        super().__init__()
        self.ctx = nn.Parameter(ctx)

    def context(self, residuals: torch.Tensor) -> torch.Tensor:
        return (self.ctx + residuals.unsqueeze(-2)).unsqueeze(-3)

    def posterior(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q, each (S, D): S = 1 (unconditional) or B (conditional)."""
        raise NotImplementedError


class UnconditionalResidual(ResidualContext):
    """q(r) = N(mu, diag(e^log_var)); mu (1, D) starts at 0, log_var (1, D) at U[low, high)."""

    def __init__(self, ctx: torch.Tensor, init_log_var: tuple[float, float]):
        super().__init__(ctx)
        low, high = init_log_var
        self.mu = nn.Parameter(torch.zeros(1, ctx.shape[-1], dtype=ctx.dtype, device=ctx.device))
        self.log_var = nn.Parameter(torch.empty_like(self.mu).uniform_(low, high))

    def posterior(self, image_features):
        return self.mu, self.log_var


def inference_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """in_dim -> hidden -> ELU -> hidden -> ELU -> out_dim (PyTorch's default Linear init)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, out_dim))


class ConditionalResidual(ResidualContext):
    """q(r | x) = N(mean_net(f), diag(exp(log_var_net(f)))) on the unit-norm image feature f (B, E)."""

    image_conditioned = True

    def __init__(self, ctx: torch.Tensor, vis_dim: int):
        super().__init__(ctx)
        width, hidden = ctx.shape[-1], vis_dim // 2
        self.mean_net = inference_mlp(vis_dim, hidden, width).to(ctx.dtype)
        self.log_var_net = inference_mlp(vis_dim, hidden, width).to(ctx.dtype)

    def posterior(self, image_features):
        f = image_features.to(self.ctx.dtype)
        return self.mean_net(f), self.log_var_net(f)


class BayesianPromptModel(PromptCLIP):
    def __init__(self, clip_model, classnames, n_samples_train: int, n_samples_test: int, kl_weight: float,
                 prediction: str, **prompt_kwargs):
        super().__init__(clip_model, classnames, **prompt_kwargs)
        self.n_samples_train, self.n_samples_test = n_samples_train, n_samples_test
        self.kl_weight, self.prediction = kl_weight, prediction

    def sampled_text(self, image_features, n_samples, noise=None):
        """Text features (S, L, C, E) of L residual draws, with the posterior's (mu, log_var) (S, D)."""
        mu, log_var = self.learner.posterior(image_features)
        residuals = gaussian_samples(mu, log_var, n_samples, noise)
        return self.encode_prompts(self.learner.context(residuals)), mu, log_var

    def mean_text(self, image_features):
        """Text features (S, 1, C, E) at r = mu; encoded once per evaluation when q does not depend on x."""
        def compute():
            mu, _ = self.learner.posterior(image_features)
            return self.encode_prompts(self.learner.context(mu.unsqueeze(1)))
        return compute() if self.learner.image_conditioned else self.cached_text_features(compute)

    def mc_logits(self, image_features, text_features):
        """f (B, E), g (S, L, C, E) with S = 1 (prompts shared by the batch) or B -> logits (L, B, C)."""
        if text_features.shape[0] == 1:
            return self.scale() * image_features @ text_features[0].mT
        return self.scale() * torch.einsum("be,blce->lbc", image_features, text_features)

    def reference_text_features(self, image_features):
        """(S, C, E) class features at r = mu."""
        return self.mean_text(image_features).squeeze(1)

    def train_logits(self, images, labels=None, noise=None):
        """Logits (L, B, C) of L residual draws, image features (B, E), and the weighted KL."""
        image_features = self.encode_images(images)
        text, mu, log_var = self.sampled_text(image_features, self.n_samples_train, noise)
        kl = gaussian_kl_to_standard_normal(mu, log_var)
        return TrainOutput(self.mc_logits(image_features, text), image_features, {"kl": self.kl_weight * kl})

    def predict_logits(self, image_features, noise=None):
        """Logits (L, B, C) of residual draws, or (1, B, C) at the posterior mean. Unconditional draws (without
        ``noise``) are made per test batch or once per evaluation (``shared_draws``, TEST.MC_DRAWS)."""
        if self.prediction == "mean":
            return self.mc_logits(image_features, self.mean_text(image_features))
        if noise is None and not self.learner.image_conditioned:
            text = self.shared_draws(lambda: self.sampled_text(image_features, self.n_samples_test)[0])
        else:
            text, _, _ = self.sampled_text(image_features, self.n_samples_test, noise)
        return self.mc_logits(image_features, text)


def build_bayesian_prompt_model(cfg, node, clip_model, classnames) -> BayesianPromptModel:
    low, high = (float(v) for v in node.INIT_LOGVAR_RANGE)
    model = BayesianPromptModel(clip_model, classnames, node.N_SAMPLES_TRAIN, node.N_SAMPLES_TEST, node.KL_WEIGHT,
                                node.PREDICTION, **prompt_model_kwargs(cfg, node))
    ctx = initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT)
    if node.POSTERIOR == "conditional":
        model.learner = ConditionalResidual(ctx, vis_dim=clip_model.visual.output_dim)
    else:
        model.learner = UnconditionalResidual(ctx, (low, high))
    return model


@register_method(node="BAYESIAN_PROMPT", keys=KEYS, build=build_bayesian_prompt_model)
class BayesianPrompt(PromptTrainer):
    """BayesianPrompt: CoOp's context plus a random residual with a (conditional) Gaussian posterior."""
