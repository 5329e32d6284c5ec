"""PBPrompt (Liu et al., UAI 2024): label-specific stochastic prompts, aligned to image patches by transport.

    e_c        = mean of the token embeddings of the name of class c                        (D,)
    q(r_c | c) = N(mu(e_c), diag exp(l(e_c))),    p(r_c) = N(e_c, I)                         mu, l: D -> D/h -> D
    r_{l,c}    = mu(e_c) + eps_{l,c} * exp(l(e_c) / 2),   eps ~ N(0, I),   l = 1..L
    h_{l,c}    = SelfAttentionLayer([r_{l,c} + p_1, ..., r_{l,c} + p_b])                     (b, D), shared layer
    t_{l,c}    = [SOS][h_{l,c}][name_c][.][EOT]  --frozen text encoder-->  g_{l,c} (E), G_{l,c} (K_c, E)
    x_b        --frozen image encoder, one pass-->  f_b (E), U_b (N, E) patch features        (all unit-norm)
    logits_l[b, c] = exp(logit_scale) f_b . g_{l,c}
    loss = -(1/B) sum_b log((1/L) sum_l softmax(logits_l[b])[y_b])
           + beta * mean_c mean_d KL(q(r_c | c) || N(e_c, I))
           + eta * (1/(B L)) sum_{b,l,c} p_l(c | x_b) D(U_b, G_{l,c}),    p_l = softmax(logits_l) (detached: key)
    D       = bidirectional conditional transport (default) or entropic OT: clipbayes.transport, between U_b and
              the token set G_{l,c}: [SOS] + prompt + class-name positions (ALIGN's, default) or the b prompt
              positions; CT navigators weigh the farthest pairs (ALIGN's softmax(-u.g / tau), default) or the
              nearest (softmax(-c / tau)); tau learned (tau = exp(phi), ALIGN's, default) or fixed
    predict = log((1/L) sum_l softmax(logits_l)), fresh r per call (or drawn once per evaluation), or r_c = mu(e_c)

G_{l,c} are the text transformer's outputs at the token set's positions and U_b the image tower's patch tokens,
read in the same passes that make g and f. CLIP's causal text mask means the b prompt positions never see the
class name: with the prompt-token set, G_{l,c} depends on the class only through r_c. All L x C prompts of a step
go through the text encoder in one (chunked) pass. The generator starts as the identity on r + p (zero-initialised
output projections) with p the embeddings of CTX_INIT, and mu starts at 0: the first prompts are "[CTX_INIT] [name]."
up to the posterior noise.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipbayes.config import ConfigError, Key, above, at_least, between, context_keys, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context
from clipbayes.modeling.text import TOKEN_SETS, count_tokens, prompt_token_positions, token_read_buckets, tokenize
from clipbayes.modeling.visual import encode_image_tokens, has_patch_features
from clipbayes.objectives import gaussian_kl_to_standard_normal, gaussian_samples
from clipbayes.registry import register_method
from clipbayes.transport import NAVIGATORS, TRANSPORTS, NavigatorTemperature, transport_distance, weighted_transport

NON_NEGATIVE = at_least(0, integer=False)

KEYS = {
    **context_keys(n_ctx=4, ctx_init="a photo of a", position=False),
    **precision_key("fp16"),
    "N_SAMPLES_TRAIN": Key(20, "L, Monte Carlo samples of the latents per training step (paper: 20)",
                           check=at_least(1), monte_carlo=True),
    "N_SAMPLES_TEST": Key(20, "L at prediction", check=at_least(1), monte_carlo=True),
    "KL_WEIGHT": Key(0.001, "beta, weight of the KL (mean over classes and dimensions)", check=NON_NEGATIVE),
    "POSTERIOR_HIDDEN_RATIO": Key(4, "hidden width of the posterior MLPs is D / this", check=at_least(1)),
    "INIT_LOG_VAR": Key(-8.0, "initial log-variance of q (bias of the log-variance MLP's last layer)",
                        check=between(-30.0, 5.0)),
    "GENERATOR_HEADS": Key(4, "attention heads of the generator's self-attention layer (must divide D)",
                           check=at_least(1)),
    "TRANSPORT": Key("ct", "patch-token regulariser D: conditional transport, entropic OT, or none",
                     choices=TRANSPORTS + ("none",)),
    "TRANSPORT_WEIGHT": Key(0.1, "eta, weight of the transport regulariser", check=NON_NEGATIVE),
    "DETACH_CLASS_WEIGHTS": Key(True, "stop the gradient through the class probabilities weighting D",
                                choices=(True, False)),
    "TRANSPORT_TOKENS": Key("with_name", "token set G_c: prompt (the b prompt positions) | with_name ([SOS], prompt "
                                      "and class-name tokens, as ALIGN)", choices=TOKEN_SETS),
    "CT_NAVIGATOR": Key("farthest", "CT navigator weights: nearest softmax(-cost / tau) | farthest softmax(-sim / "
                                   "tau), ALIGN's", choices=NAVIGATORS),
    "CT_TEMPERATURE": Key(0.1, "tau of the CT navigators (the initial tau when learned)", check=above(0)),
    "CT_LEARN_TEMPERATURE": Key(True, "learn tau = exp(phi) with the prompts, as ALIGN (TRANSPORT ct only)",
                                choices=(True, False)),
    "SINKHORN_EPSILON": Key(0.1, "entropic regularisation of the OT plan", check=above(0)),
    "SINKHORN_ITERS": Key(100, "Sinkhorn iterations", check=at_least(1)),
    "TRANSPORT_CLASS_CHUNK": Key(100, "classes per transport chunk, recomputed in backward (0: all at once)",
                                 check=at_least(0)),
    "PREDICTION": Key("mc", "mc: MC average over L samples (drawn per test batch or once per evaluation: "
                            "TEST.MC_DRAWS) | mean: r_c = mu(e_c)", choices=("mc", "mean")),
}


def class_name_embeddings(text_encoder, classnames: list[str]) -> torch.Tensor:
    """e (C, D): the mean of the token embeddings of each class name ("_" read as a space), without SOS/EOT."""
    names = [name.replace("_", " ") for name in classnames]
    tokens = tokenize(names).to(text_encoder.token_embedding.weight.device)
    with torch.no_grad():
        embedded = text_encoder.embed(tokens)
    return torch.stack([embedded[c, 1:1 + count_tokens(name)].mean(0) for c, name in enumerate(names)])


def posterior_mlp(width: int, hidden: int) -> nn.Sequential:
    """D -> hidden -> ReLU -> D; the last layer starts at zero (its bias is set by the caller)."""
    net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))
    nn.init.zeros_(net[2].weight)
    nn.init.zeros_(net[2].bias)
    return net


class PromptGenerator(nn.Module):
    """b label-specific prompt tokens from a latent: r (..., D) -> layer([r + p_1, ..., r + p_b]) (..., b, D).

    One pre-norm transformer-encoder layer (self-attention over the b tokens, then a 4D MLP), shared by all
    classes; its two output projections start at zero, so the generator starts as r -> [r + p_k]_k.
    """

    def __init__(self, positions: torch.Tensor, heads: int):
        super().__init__()
        width = positions.shape[-1]
        self.positions = nn.Parameter(positions)
        self.layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                                activation="gelu", batch_first=True, norm_first=True)
        for projection in (self.layer.self_attn.out_proj, self.layer.linear2):
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        tokens = latents.unsqueeze(-2) + self.positions
        return self.layer(tokens.reshape(-1, *tokens.shape[-2:])).reshape(tokens.shape)


class PBPromptLearner(nn.Module):
    """Posterior MLPs on the class-name embeddings and the prompt generator: everything PBPrompt learns."""

    def __init__(self, positions: torch.Tensor, hidden_ratio: int, init_log_var: float, heads: int,
                 temperature: NavigatorTemperature):
        super().__init__()
        width = positions.shape[-1]
        self.mean_net = posterior_mlp(width, max(1, width // hidden_ratio))
        self.log_var_net = posterior_mlp(width, max(1, width // hidden_ratio))
        nn.init.constant_(self.log_var_net[2].bias, init_log_var)
        self.generator = PromptGenerator(positions, heads)
        self.navigator_temperature = temperature

    def posterior(self, name_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(r_c | c), each (C, D), in the learner's dtype."""
        name_embeddings = name_embeddings.to(self.generator.positions.dtype)
        return self.mean_net(name_embeddings), self.log_var_net(name_embeddings)


class PBPromptModel(PromptCLIP):
    def __init__(self, clip_model, classnames, node, **prompt_kwargs):
        super().__init__(clip_model, classnames, **prompt_kwargs)
        self.n_samples_train, self.n_samples_test = node.N_SAMPLES_TRAIN, node.N_SAMPLES_TEST
        self.kl_weight, self.prediction = node.KL_WEIGHT, node.PREDICTION
        self.transport_weight, self.detach_weights = node.TRANSPORT_WEIGHT, node.DETACH_CLASS_WEIGHTS
        self.class_chunk, self.transport_kind = node.TRANSPORT_CLASS_CHUNK, node.TRANSPORT
        self.navigator, self.sinkhorn = node.CT_NAVIGATOR, (node.SINKHORN_EPSILON, node.SINKHORN_ITERS)
        self.register_buffer("name_embeddings", class_name_embeddings(self.text_encoder, classnames),
                             persistent=False)
        positions, mask = prompt_token_positions(self.prompts.eot, self.prompts.n_ctx, node.TRANSPORT_TOKENS)
        self.token_buckets = token_read_buckets(self.prompts.eot, positions)
        self.register_buffer("token_mask", None if mask.all() else mask.to(self.prompts.eot.device), persistent=False)

    def distance(self):
        """D(U, G) of TRANSPORT (None for none), at the navigator temperature's current value."""
        if self.transport_kind == "none":
            return None
        return transport_distance(self.transport_kind, self.learner.navigator_temperature, *self.sinkhorn,
                                  navigator=self.navigator)

    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image-tower pass: unit-norm image features (B, E) and patch features (B, N, E)."""
        image, patches = encode_image_tokens(self.image_encoder, images.type(self.dtype))
        return F.normalize(image, dim=-1), F.normalize(patches, dim=-1)

    def encode_prompt_tokens(self, ctx: torch.Tensor, with_tokens: bool = True):
        """Prompt tokens (L, C, b, D) -> unit-norm class features (L, C, E) and, from the same text pass, the token
        set's features (L, C, K, E) (or None; K = b for the prompt-token set)."""
        prompts = self.prompts(ctx)
        flat = prompts.reshape(-1, *prompts.shape[-2:])
        if not with_tokens:
            return F.normalize(self.text_encoder(flat, self.prompts.buckets), dim=-1).reshape(*ctx.shape[:2], -1), None
        features, tokens = self.text_encoder.encode_with_tokens(flat, self.token_buckets)
        return (F.normalize(features, dim=-1).reshape(*ctx.shape[:2], -1),
                F.normalize(tokens, dim=-1).reshape(*ctx.shape[:2], *tokens.shape[-2:]))

    def sampled_text(self, n_samples: int, noise=None, with_tokens: bool = False):
        """L draws of every class's latent -> (features (L, C, E), token features (L, C, K, E) or None, mu, log_var).

        ``noise``: eps of shape (C, L, D); standard normal draws by default."""
        mu, log_var = self.learner.posterior(self.name_embeddings)
        latents = gaussian_samples(mu, log_var, n_samples, noise).transpose(0, 1)  # (L, C, D)
        text, tokens = self.encode_prompt_tokens(self.learner.generator(latents), with_tokens)
        return text, tokens, mu, log_var

    def mc_logits(self, image_features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """f (B, E), g (L, C, E) -> logits (L, B, C)."""
        return self.scale() * image_features @ text.mT

    def train_logits(self, images, labels=None, noise=None) -> TrainOutput:
        distance = self.distance()
        with_transport = distance is not None
        if with_transport:
            image_features, patches = self.encode_image_tokens(images)
        else:
            image_features = self.encode_images(images)
        text, tokens, mu, log_var = self.sampled_text(self.n_samples_train, noise, with_transport)
        logits = self.mc_logits(image_features, text)
        kl = gaussian_kl_to_standard_normal(mu - self.name_embeddings, log_var)  # KL(N(mu, s^2) || N(e, I))
        regularisers = {"kl": self.kl_weight * kl}
        if with_transport:
            weights = logits.float().softmax(dim=-1)
            weights = weights.detach() if self.detach_weights else weights
            regularisers["transport"] = self.transport_weight * weighted_transport(
                patches, tokens, weights, distance, self.class_chunk, self.token_mask)
        return TrainOutput(logits, image_features, regularisers)

    def mean_text(self) -> torch.Tensor:
        """(1, C, E) class features at r_c = mu(e_c)."""
        mu, _ = self.learner.posterior(self.name_embeddings)
        return self.encode_prompt_tokens(self.learner.generator(mu.unsqueeze(0)), with_tokens=False)[0]

    def reference_text_features(self, image_features) -> torch.Tensor:
        """(C, E) class features at r_c = mu(e_c)."""
        return self.mean_text()[0]

    def predict_logits(self, image_features, noise=None) -> torch.Tensor:
        """(L, B, C) logits of L draws (``mc``: per test batch, or once per evaluation with TEST.MC_DRAWS
        per_evaluation, ``shared_draws``), or (1, B, C) at the posterior mean (``mean``, encoded once per
        evaluation)."""
        if self.prediction == "mean":
            text = self.cached_text_features(self.mean_text)
        elif noise is None:
            text = self.shared_draws(lambda: self.sampled_text(self.n_samples_test)[0])
        else:
            text = self.sampled_text(self.n_samples_test, noise)[0]
        return self.mc_logits(image_features, text)


def build_pbprompt_model(cfg, node, clip_model, classnames) -> PBPromptModel:
    if node.TRANSPORT != "none" and not has_patch_features(clip_model.visual):
        raise ConfigError(f"TRAINER.PBPROMPT.TRANSPORT '{node.TRANSPORT}' needs patch features, which the image "
                          f"encoder {type(clip_model.visual).__name__} of {cfg.MODEL.BACKBONE.NAME} does not give "
                          f"(CLIP's ViT and ModifiedResNet do): use a CLIP backbone or TRANSPORT none.")
    width = clip_model.ln_final.weight.shape[0]
    if width % node.GENERATOR_HEADS:
        raise ConfigError(f"TRAINER.PBPROMPT.GENERATOR_HEADS ({node.GENERATOR_HEADS}) must divide the text width "
                          f"D = {width} of {cfg.MODEL.BACKBONE.NAME}")
    model = PBPromptModel(clip_model, classnames, node, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                          text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                          text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)
    positions = initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT)
    temperature = NavigatorTemperature(node.CT_TEMPERATURE, node.CT_LEARN_TEMPERATURE and node.TRANSPORT == "ct")
    model.learner = PBPromptLearner(positions, node.POSTERIOR_HIDDEN_RATIO, node.INIT_LOG_VAR,
                                    node.GENERATOR_HEADS, temperature).to(positions.dtype)
    return model


@register_method(node="PBPROMPT", keys=KEYS, build=build_pbprompt_model)
class PBPrompt(PromptTrainer):
    """Label-specific stochastic prompts from class-name latents, aligned to image patches by transport."""
