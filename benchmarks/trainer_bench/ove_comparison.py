"""The OVE-PG objective alone, forward + backward on (B, C) logits: ours (``clipbayes.objectives.ove_pg_loss``,
O(B x C)) against a dense re-statement of the official algorithm (B x C x C difference tensors, a Python loop over
the C classes, a dense B(C-1) x B(C-1) precision matrix, solve and inverse per class), measured at small C and its
growth t = a C^k extrapolated from the two largest measured sizes (``--compare-official-ove``, ``--ove-only``)."""
from __future__ import annotations

import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def official_pg_mean(c):
    """The official PG 'mean' (b = 1): c clamped to [1e-8, 20], tanh(min(c/2, 10)) / (c + 1e-8)."""
    c = c.clamp(1e-8, 20.0)
    return torch.tanh((0.5 * c).clamp(max=10.0)) / (c + 1e-8)


def dense_official_ove_loss(f, z, y, alpha, lambda_1, noise_rows):
    """The official CoOp_OVE_PG objective, densely, one Gibbs sample (per-sample kappa, i.e. without the official
    kappa-tiling defect). f, z: (B, C); noise_rows: (C, B, C-1), the eps of row j, sample b, pair (j, h)."""
    B, C = f.shape
    diff_f = f.unsqueeze(2) - f.unsqueeze(1)  # (B, C, C): [b, j, h] = f_j - f_h
    diff_z = (z.unsqueeze(2) - z.unsqueeze(1)).detach()
    kappa = F.one_hot(y, C).to(f.dtype) - 0.5  # (B, C)
    rows = []
    for j in range(C):  # every candidate class j, as the official loop
        keep = torch.cat([torch.arange(0, j), torch.arange(j + 1, C)]).to(f.device)
        m = diff_f[:, j, keep].reshape(-1)  # (B (C-1),), sample-major
        c = diff_z[:, j, keep].reshape(-1)
        n = m.numel()
        kap = kappa[:, j].repeat_interleave(C - 1)
        precision = torch.diag(official_pg_mean(c)) + alpha * torch.eye(n, dtype=f.dtype, device=f.device)
        mean = torch.linalg.solve(precision, alpha * m + kap)
        cov = torch.linalg.inv(precision)
        psi = mean + torch.sqrt(torch.diagonal(cov)) * noise_rows[j].reshape(-1)
        rows.append(F.logsigmoid(psi).reshape(B, C - 1).sum(-1))
    log_probs = torch.stack(rows, dim=1)  # (B, C)
    return F.nll_loss(log_probs, y) + lambda_1 * (z - f).pow(2).mean()


def time_fb(fn, f, reps):
    """Median seconds of forward + backward of ``fn`` on a fresh leaf copy of ``f`` (``reps`` times), last loss."""
    times = []
    for _ in range(reps):
        g = f.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss = fn(g)
        loss.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), loss.detach()


def compare_ove(args) -> list[dict]:
    """One row per C of ``args.ove_dense_classes`` and ``args.ove_classes``: both losses and times at B =
    ``args.ove_batch`` on the same logits and noise (the dense one only at the dense sizes)."""
    from clipbayes.objectives import ove_pg_loss

    B, alpha, lambda_1 = args.ove_batch, 1.0, 0.2
    rows = []
    sizes = sorted(set(args.ove_dense_classes) | {args.ove_classes})
    for C in sizes:
        gen = torch.Generator().manual_seed(C)
        f = torch.randn(B, C, generator=gen) * 5
        z = torch.randn(B, C, generator=gen) * 5
        y = torch.randint(0, C, (B,), generator=gen)
        noise_rows = torch.randn(C, B, C - 1, generator=gen)
        eps = torch.stack([noise_rows[int(y[b]), b] for b in range(B)]).unsqueeze(0)  # true rows, (1, B, C-1)
        ours = lambda g: ove_pg_loss(g, z, y, alpha=alpha, lambda_1=lambda_1, omega_formula="official",
                                     noise=eps)[0]
        time_fb(ours, f, 3)  # warm-up
        if C == sizes[0]:  # warm up the dense path (linear-algebra initialisation) once
            time_fb(lambda g: dense_official_ove_loss(g, z, y, alpha, lambda_1, noise_rows), f, 1)
        t_ours, l_ours = time_fb(ours, f, args.ove_reps)
        row = dict(C=C, B=B, ours_s=t_ours, ours_loss=l_ours.item(), dense_s=None, dense_loss=None,
                   dense_matrix_mib=(B * (C - 1)) ** 2 * 4 / 2**20, dense_bcc_mib=B * C * C * 4 / 2**20,
                   measured=False)
        if C in args.ove_dense_classes:
            dense = lambda g: dense_official_ove_loss(g, z, y, alpha, lambda_1, noise_rows)
            reps = 1 if C >= 100 else 3
            t_dense, l_dense = time_fb(dense, f, reps)
            row.update(dense_s=t_dense, dense_loss=l_dense.item(), measured=True)
        rows.append(row)
        print(f"  OVE-PG C={C}: ours {row['ours_s'] * 1e3:.3f} ms"
              + (f", dense {row['dense_s']:.3f} s" if row["measured"] else ""), file=sys.stderr)
    measured = [r for r in rows if r["measured"]]
    if len(measured) >= 2:  # power-law growth t = a C^k from the two largest measured sizes
        r1, r2 = measured[-2], measured[-1]
        k = math.log(r2["dense_s"] / r1["dense_s"]) / math.log(r2["C"] / r1["C"])
        for r in rows:
            if not r["measured"]:
                r["dense_s_extrapolated"] = r2["dense_s"] * (r["C"] / r2["C"]) ** k
                r["growth_exponent"] = k
    return rows


def ove_table(rows) -> str:
    """The printed table of ``compare_ove``'s rows."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if r["measured"]:
            dense = f"{r['dense_s']:.3f}"
            ratio = f"{r['dense_s'] / r['ours_s']:.0f}x"
            agree = f"{abs(r['dense_loss'] - r['ours_loss']):.1e}"
        elif "dense_s_extrapolated" in r:
            dense = f"~{r['dense_s_extrapolated']:.0f} (extrapolated, C^{r['growth_exponent']:.1f})"
            ratio = f"~{r['dense_s_extrapolated'] / r['ours_s']:.0e}x"
            agree = "not run"
        else:
            dense, ratio, agree = "not run", "", ""
        table.append([r["C"], r["B"], f"{r['ours_s'] * 1e3:.3f}", dense, ratio, agree,
                      f"{r['dense_matrix_mib']:.1f}", f"{r['dense_bcc_mib']:.2f}"])
    return tabulate(table, headers=["C", "B", "ours ms (fwd+bwd)", "dense official s (fwd+bwd)", "dense / ours",
                                    "|loss diff|", "per-class dense matrix MiB", "B x C x C MiB"])
