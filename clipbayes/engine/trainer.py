"""The base Dassl trainer every method shares.

It builds CLIP, freezes it, hands the learnable ``learner`` of the method's model to Dassl
(``register_model("prompt_learner", ...)``, so checkpoints sit where CoOp puts them), builds the optimiser from
the OPTIM keys with a torch-native schedule, and runs training steps with precision handling and a NaN guard.
It replaces the parts of Dassl that fail on current torch: warm-up schedulers, ``torch.load`` of checkpoints,
``load_model`` without a validation result; and it writes checkpoints atomically.

A method is a subclass registered with ``clipbayes.registry.register_method``, which sets ``method`` (its
``MethodSpec``: config node, keys, model builder); the model it builds satisfies
``clipbayes.modeling.contract.MethodModel``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os.path as osp

import torch
from clipbayes.compat import import_dassl
from clipbayes.engine import checkpoint as ckpt
from clipbayes.engine.budget import BudgetMeter
from clipbayes.engine import cpu
from clipbayes.engine import distributed as ddp
from clipbayes.engine import progress
from clipbayes.engine.feature_cache import cache_key, cached_image_features
from clipbayes.engine.rng_state import RANK_RNG_STATES_KEY, RNG_STATE_KEY, capture_rng_state, restore_rng_state
from clipbayes.engine.schedule import build_lr_scheduler
from clipbayes.evaluation.report import PredictionCollector, Predictions
from clipbayes.evaluation.reporter import EvaluationReporter
from clipbayes.modeling.clip_loader import load_clip
from clipbayes.modeling.precision import apply_precision, autocast, grad_scaler, learner_dtype, resolve_precision
from clipbayes.objectives import predictive_scores

import_dassl()
from dassl.data.data_manager import build_data_loader  # noqa: E402
from dassl.engine import TrainerX  # noqa: E402
from dassl.optim import build_optimizer  # noqa: E402
from dassl.utils import count_num_param  # noqa: E402

LEARNER_NAME = "prompt_learner"
# Buffers that CoOp/CoCoOp store in their checkpoints but that depend only on the class names.
_CLASS_DEPENDENT_BUFFERS = ("token_prefix", "token_suffix")


class NonFiniteLossError(FloatingPointError):
    pass


class PromptTrainer(TrainerX):
    method = None  # the MethodSpec, set by clipbayes.registry.register_method

    # --- construction ------------------------------------------------------------------------------------------
    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.method.node]

    @classmethod
    def make_prompt_model(cls, cfg, clip_model, classnames):
        """The method's model for ``classnames``; reads its keys from ``cfg.TRAINER.<node>``. Its learner is cast
        to the dtype of LEARNER_PREC (float32 master weights by default; the values it was built with, in the
        CLIP's dtype, are kept, so both settings start from the same point); its text encoder shares prompt
        prefixes unless MODEL.CLIP.PREFIX_SHARING is False."""
        node = cfg.TRAINER[cls.method.node]
        model = cls.method.build(cfg, node, clip_model, classnames)
        if model.learner is not None:
            model.learner.to(learner_dtype(node.LEARNER_PREC, model.dtype))
        model.text_encoder.share_prefixes = cfg.MODEL.CLIP.PREFIX_SHARING
        return model

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.CLIP.CACHE_DIR or None)
        self.precision = resolve_precision(self.method_cfg.PREC, self.device)
        apply_precision(clip_model, self.precision)

        print("Building the prompt model")
        self.model = self.make_prompt_model(cfg, clip_model, classnames)
        learner = self.model.learner
        self.model.requires_grad_(False)
        if learner is not None:
            learner.requires_grad_(True)
        self.model.to(self.device)
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        print(f"Parameters to update: {trainable}")
        print(f"# params: {count_num_param(self.model):,} (trainable: "
              f"{sum(p.numel() for p in self.model.parameters() if p.requires_grad):,})")
        if learner is not None and trainable:
            self.optim, self.sched = self.build_optimization(learner)
            self.register_model(LEARNER_NAME, learner, self.optim, self.sched)
        self.scaler, self.epoch_losses = None, []
        if self.is_trainable:
            self.scaler = grad_scaler(self.precision, self.learner_dtype, self.device)
            print(f"Precision: frozen CLIP {self.precision}, learner {self.learner_dtype} (LEARNER_PREC "
                  f"{self.method_cfg.LEARNER_PREC})" + ("; dynamic loss scaling" if self.scaler else ""))
        self.budget = BudgetMeter(self.model)  # what training spends (counts during training epochs only)
        self.ddp_step = None
        if ddp.world_size() > 1:
            if self.is_trainable:
                self.ddp_step = ddp.wrap_learner(self.model, self.device)
            ddp.reseed_for_rank(cfg.SEED)
            print(f"DistributedDataParallel on {ddp.world_size()} processes: learner synchronised, global batch "
                  f"{cfg.DATALOADER.TRAIN_X.BATCH_SIZE} ({ddp.check_batch_size(cfg.DATALOADER.TRAIN_X.BATCH_SIZE)} "
                  f"per process), rank r draws from seed SEED + r")

    def build_optimization(self, learner):
        """(optimizer, per-epoch scheduler) of the learner from the OPTIM keys (a sampler overrides this)."""
        optim = build_optimizer(learner, self.cfg.OPTIM)
        return optim, build_lr_scheduler(optim, self.cfg.OPTIM)

    def build_data_loader(self):
        super().build_data_loader()
        if ddp.world_size() > 1:
            self.train_loader_x = ddp.distributed_train_loader(self.train_loader_x, self.cfg.SEED)

    def before_epoch(self):
        if ddp.world_size() > 1:
            self.train_loader_x.batch_sampler.set_epoch(self.epoch)
        threads = cpu.policy()
        change = threads.update() if threads is not None else None
        if change:
            print(change)
        self.epoch_losses = []
        self.budget.counting = True

    def after_epoch(self):
        self.budget.counting = False
        super().after_epoch()
        losses = self.epoch_losses
        progress.report(self.epoch_clock.line(self.epoch, sum(losses) / len(losses) if losses else None))

    def init_writer(self, log_dir):
        if ddp.is_main():  # one TensorBoard: rank 0's
            super().init_writer(log_dir)

    @property
    def is_trainable(self) -> bool:
        return bool(self.get_model_names())

    @property
    def learner_dtype(self) -> torch.dtype:
        return next(self.model.learner.parameters()).dtype

    # --- one training step ---------------------------------------------------------------------------------------
    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def before_train(self):
        if self.model.wants_train_features:
            self.attach_train_features()
        super().before_train()
        self.epoch_clock = progress.EpochClock(self.start_epoch, self.max_epoch)

    def after_train(self):
        """Log what training spent (clipbayes/engine/budget.py), then Dassl's final test."""
        print(self.budget.line(self.start_epoch + 1, self.max_epoch))
        self.budget.close()
        super().after_train()

    @torch.no_grad()
    def attach_train_features(self):
        """One pass over the training loader: its image features (N, E) and labels (N,) go to the model."""
        features, labels = [], []
        for batch in progress.bar(self.train_loader_x, "training-set image features", show=ddp.is_main()):
            images, label = self.parse_batch_train(batch)
            with autocast(self.precision, self.device):
                features.append(self.model.encode_images(images).float().cpu())
            labels.append(label.cpu())
        parts = ddp.gather_objects((torch.cat(features), torch.cat(labels)),  # under torchrun: every rank's share
                                   "gathering the training-set image features")
        self.model.attach_train_features(torch.cat([f for f, _ in parts]).to(self.device),
                                         torch.cat([y for _, y in parts]).to(self.device))

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with ddp.collective(f"the training step of epoch {self.epoch + 1}, batch {self.batch_idx + 1} (gradient "
                            f"all-reduce)"):
            with autocast(self.precision, self.device):
                loss, scores, extras = (self.ddp_step or self.model.train_loss)(images, labels)
            if scores.shape[0] != labels.shape[0]:  # rows appended by the method (augmentation): score the real ones
                scores = scores[:labels.shape[0]]
            self.check_finite(loss)
            self.optim.zero_grad()
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optim)
                self.scaler.update()
            else:
                loss.backward()
                self.optim.step()
        self.budget.step(labels.shape[0] * ddp.world_size())
        summary = {"loss": loss.item(), "acc": (scores.argmax(-1) == labels).float().mean().item() * 100, **extras}
        self.epoch_losses.append(summary["loss"])
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at epoch {self.epoch + 1}, batch {self.batch_idx + 1} "
                f"(lr {self.get_current_lr():.3e}, precision {self.precision}). No checkpoint was written for this "
                f"epoch; earlier ones in {self.output_dir} are intact. Try PREC fp32 or a lower OPTIM.LR.")

    # --- evaluation ----------------------------------------------------------------------------------------------
    def model_inference(self, images):
        """Scores (B, C) for a batch of images (Dassl's API; ``test`` evaluates from image features)."""
        with autocast(self.precision, self.device):
            return self.model.predict(images).float()

    @torch.no_grad()
    def test(self, split=None):
        """Evaluate as Dassl does, in two passes: image features of the split (:meth:`split_features`), then
        predictions from them in test batches (:meth:`predict_from_features`), reported by Dassl's evaluator; then
        the calibration and selective-prediction report (:mod:`clipbayes.evaluation.reporter`). Under torchrun
        each process computes the test batches j = rank, rank + N, ... of both passes and the results are
        gathered in batch order: the same numbers as one process; only rank 0 writes the report's files."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split, loader, items = self.evaluation_split(split)
        print(f"Evaluate on the *{split}* set")
        features, labels = self.split_features(split, loader, items)
        collector = PredictionCollector()
        scores = self.predict_from_features(features, loader.batch_size, collector)
        for start in range(0, len(labels), loader.batch_size):
            stop = start + loader.batch_size
            self.evaluator.process(scores[start:stop].to(self.device), labels[start:stop].to(self.device))
        results = self.evaluator.evaluate()
        for name, value in results.items():
            self.write_scalar(f"{split}/{name}", value, self.epoch)
        self.reporter.report(split, collector.gather(labels), self.epoch)
        return list(results.values())[0]

    @functools.cached_property
    def reporter(self) -> EvaluationReporter:
        return EvaluationReporter(self.cfg, self.dm.dataset, self.held_out_predictions, writes=ddp.is_main())

    @torch.no_grad()
    def held_out_predictions(self, split: str, items) -> Predictions:
        """Predictions for the val split or the training items (test-time transform): temperature scaling's data."""
        if split == "val" and self.val_loader is not None:
            loader = self.val_loader
        else:
            loader = build_data_loader(self.cfg, data_source=items, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
                                       tfm=self.test_loader.dataset.transform, is_train=False)
        self.set_model_mode("eval")
        features, labels = self.split_features(split, loader, items)
        collector = PredictionCollector()
        self.predict_from_features(features, loader.batch_size, collector)
        return collector.gather(labels)

    @torch.no_grad()
    def test_time_images(self, items) -> torch.Tensor:
        """The images (N, 3, H, W) of dataset items under the test-time transform, on the trainer's device."""
        loader = build_data_loader(self.cfg, data_source=items, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
                                   tfm=self.test_loader.dataset.transform, is_train=False)
        return torch.cat([batch["img"] for batch in loader]).to(self.device)

    def evaluation_split(self, split=None):
        """(name, loader, items) of the split to evaluate: ``val`` when asked for and present, else ``test``."""
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            return split, self.val_loader, self.dm.dataset.val
        return "test", self.test_loader, self.dm.dataset.test

    def split_features(self, split, loader, items):
        """Unit-norm image features (N, E) and labels (N,) of a split, on the CPU; read from and written to the
        feature cache when MODEL.CLIP.IMAGE_FEATURE_CACHE is set."""
        def compute():
            shard, batch_indices = ddp.sharded_loader(loader)  # the same test batches as in one process
            local = {}
            for j, batch in progress.bar(zip(batch_indices, shard), f"{split} image features", len(batch_indices),
                                         show=ddp.is_main()):
                images, label = self.parse_batch_test(batch)
                with autocast(self.precision, self.device):
                    local[j] = (self.model.encode_images(images).float().cpu(), label.cpu())
            features, labels = zip(*ddp.gather_batches(local, f"gathering the {split} image features"))
            return torch.cat(features), torch.cat(labels)

        cache_dir = self.cfg.MODEL.CLIP.IMAGE_FEATURE_CACHE
        if cache_dir and self.model.learned_image_features:
            if not getattr(self, "_noted_feature_cache", False):
                print(f"MODEL.CLIP.IMAGE_FEATURE_CACHE is not used: the image features of {type(self).__name__} "
                      f"depend on its learned vision prompts")
                self._noted_feature_cache = True
        elif cache_dir:
            key = cache_key(self.cfg, self.precision, split, items)
            return cached_image_features(cache_dir, key, compute, write=ddp.is_main())
        return compute()

    def predict_from_features(self, features, batch_size, collector: PredictionCollector | None = None):
        """Scores (N, C) on the CPU (softmax = the predictive distribution) from image features (N, E), in batches,
        with image-independent class features encoded once; each batch's scores (and Monte Carlo samples) also go
        to ``collector``. Test-time sampling of batch j draws from the RNG seeded with (SEED, j), and draws shared
        by the evaluation (TEST.MC_DRAWS per_evaluation) from one seeded with (SEED, -1); the RNG is restored
        afterwards: the same weights give the same result at the end of training, with --eval-only, with cached
        features and with any number of processes; training is unaffected."""
        local = {}
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.model.evaluation_cache(self.cfg.TEST.MC_DRAWS,
                                                            ddp.evaluation_seed(self.cfg.SEED, -1)))
            stack.enter_context(torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []))
            for j in ddp.my_batches(-(-len(features) // batch_size)):
                torch.manual_seed(ddp.evaluation_seed(self.cfg.SEED, j))
                batch = features[j * batch_size:(j + 1) * batch_size].to(self.device, self.model.dtype)
                with autocast(self.precision, self.device):
                    logits = self.model.predict_logits(batch).float()
                scores = predictive_scores(logits)
                part = PredictionCollector()
                part.add(scores, logits if logits.dim() == 3 else None)
                local[j] = (scores.cpu(), part)
        scores, parts = zip(*ddp.gather_batches(local, "gathering the test predictions"))
        if collector is not None:
            for part in parts:
                collector.absorb(part)
        return torch.cat(scores)

    # --- training loop hooks -------------------------------------------------------------------------------------
    def train(self):
        if not self.is_trainable:
            print(f"{type(self).__name__} has no parameters to train; evaluating directly")
            self.test()
            return
        super().train()

    # --- checkpoints ----------------------------------------------------------------------------------------------
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        rng_states = ddp.gather_objects(capture_rng_state(),  # every rank's, in rank order
                                        f"gathering the random states for the checkpoint of epoch {epoch + 1}")
        if not ddp.is_main():  # one writer: rank 0
            return
        for name in self.get_model_names():
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": self._optims[name].state_dict() if self._optims[name] is not None else None,
                "scheduler": self._scheds[name].state_dict() if self._scheds[name] is not None else None,
                "val_result": val_result,
                RNG_STATE_KEY: rng_states[0],
            }
            if len(rng_states) > 1:
                state[RANK_RNG_STATES_KEY] = rng_states
            if self.scaler is not None:
                state["grad_scaler"] = self.scaler.state_dict()
            file_name = model_name or f"model.pth.tar-{epoch + 1}"
            ckpt.save_checkpoint(state, osp.join(directory, name), file_name)
            if is_best:
                ckpt.save_checkpoint(state, osp.join(directory, name), "model-best.pth.tar", update_pointer=False)

    def resume_model_if_exist(self, directory):
        names = self.get_model_names()
        paths = {name: ckpt.newest_checkpoint(osp.join(directory, name)) for name in names}
        if not names or any(p is None for p in paths.values()):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name, path in paths.items():
            state = ckpt.load_checkpoint(path)
            self._load_learner_state(name, state["state_dict"], path)
            if self._optims[name] is not None and state.get("optimizer") is not None:
                self._optims[name].load_state_dict(state["optimizer"])
            if self._scheds[name] is not None and state.get("scheduler") is not None:
                self._scheds[name].load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("grad_scaler") is not None:
                self.scaler.load_state_dict(state["grad_scaler"])
            start_epoch = state["epoch"]
            print(f"Resumed {name} from {path} (epoch {start_epoch})")
        self._restore_rng_state(state, path)
        return start_epoch

    def _restore_rng_state(self, state, path):
        """Restore the random states saved with the checkpoint, so the resumed epochs replay the uninterrupted
        run's draws (clipbayes/engine/rng_state.py)."""
        if RNG_STATE_KEY not in state:
            print(f"Note: {path} holds no random-number states (written by an older version or by Dassl/CoOp); "
                  f"training resumes from its weights, but the draws after the resume differ from an "
                  f"uninterrupted run")
            return
        states = state.get(RANK_RNG_STATES_KEY) or [state[RNG_STATE_KEY]]
        if len(states) != ddp.world_size():
            print(f"Note: {path} was written by {len(states)} process(es) and is resumed by {ddp.world_size()}: "
                  f"the random states are not restored, so the draws after the resume differ from an "
                  f"uninterrupted run")
            return
        for note in restore_rng_state(states[ddp.rank()]):
            print(f"Note: {note}")

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        file_name = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, file_name)
            if not osp.exists(path):
                raise FileNotFoundError(
                    f"No model at {path}. Check --model-dir and --load-epoch (the epochs saved are the files "
                    f"model.pth.tar-<epoch> in {osp.join(directory, name)}).")
            state = ckpt.load_checkpoint(path)
            val = state.get("val_result")
            val_text = f"{val:.1f}" if isinstance(val, (int, float)) and math.isfinite(val) else "none"
            print(f"Load {path} to {name} (epoch={state['epoch']}, val_result={val_text})")
            self._load_learner_state(name, state["state_dict"], path)
        self.reporter.loaded_from(directory)

    def _load_learner_state(self, name, state_dict, path):
        state_dict = {k: v for k, v in state_dict.items() if k.split(".")[-1] not in _CLASS_DEPENDENT_BUFFERS}
        module = self._models[name]
        expected = module.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        resizable = set(getattr(module, "resizable_state", ()))  # e.g. APEX's training classes, loaded as saved
        mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                      for k, v in state_dict.items()
                      if k in expected and v.shape != expected[k].shape and k not in resizable]
        if missing or unexpected or mismatched:
            raise RuntimeError(
                f"Checkpoint {path} does not fit trainer {type(self).__name__} with this config: "
                f"missing {missing}, unexpected {unexpected}, shape mismatch {mismatched}. Was it written by "
                f"another trainer, another number of classes (class-specific context) or other N_CTX?")
        module.load_state_dict(state_dict)
