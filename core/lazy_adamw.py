"""AdamW that skips the rows of big embedding matrices no batch has touched yet.

Legend: V vocabulary rows, H hidden, A rows touched at least once so far.

Plain AdamW updates all V rows every step. A row whose gradient has always been zero has
exp_avg = exp_avg_sq = 0, so its update is only the decoupled weight decay
``w *= 1 - lr_t * wd``. ``LazyAdamW`` keeps the running product of those factors and brings
a row up to date only when it is needed: when a forward pass is about to read it (a
pre-hook on the embedding, see ``attach``), when a gradient first touches it, and for all
rows in ``materialize()`` (the loop calls it before evaluating or saving). Rows touched at
least once get the exact AdamW update every step, zero gradient or not, so the weights equal
plain AdamW's up to float rounding. The moments are kept for the A touched rows only, (A, H)
in the order of ``state["rows"]`` (the order the rows were first touched; ``state["slot"]`` maps a
row id to its position): an untouched row's moments are zero, so they need no storage
(for xlm-roberta-base's 250,002 x 768 embedding, plain AdamW's two (V, H) moments are 1.5 GB in
fp32; a run on one language touches a fraction of the rows). With sparse embedding gradients
(``nn.Embedding(sparse=True)``) the (V, H) dense gradient and the (V, H) update never exist either.

Cost per step: the touched rows' update is O(A x H), like AdamW's O(V x H). New rows are appended
to the moments in place: they live in buffers with spare room that grow by half when full (at most
1.5 A rows, a few reallocations in a run), so a step that touches new rows does not copy the old
moments; the saved state holds exactly (A, H).

Param groups with ``lazy_rows=True`` hold 2-d tensors handled this way (their gradient may
be sparse or dense); every other group is plain ``torch.optim.AdamW``.
"""
from __future__ import annotations

import torch
from torch import nn


class LazyAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` plus row-lazy updates for groups marked ``lazy_rows``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # AdamW.step skips parameters without a gradient: hide the lazy ones from it.
        lazy = [(group, p, p.grad) for group in self.param_groups if group.get("lazy_rows")
                for p in group["params"] if p.grad is not None]
        for _, p, _ in lazy:
            p.grad = None
        try:
            super().step()
        finally:
            for _, p, grad in lazy:
                p.grad = grad
        # A fused AdamW under an fp16 GradScaler gets found_inf (and grad_scale if not unscaled) from the scaler.
        found_inf, grad_scale = getattr(self, "found_inf", None), getattr(self, "grad_scale", None)
        if found_inf is not None and bool(found_inf):
            return loss  # the scaler skips this step
        for group, p, grad in lazy:
            self._lazy_step(group, p, grad if grad_scale is None else grad / grad_scale.to(grad.dtype))
        return loss

    def _row_state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["active"] = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)  # (V,) touched once
            state["rows"] = torch.zeros(0, dtype=torch.long, device=p.device)  # (A,) the touched rows, first-touch order
            state["slot"] = torch.full((p.shape[0],), -1, dtype=torch.long, device=p.device)  # (V,) position in rows, or -1
            state["exp_avg"] = p.new_zeros(0, p.shape[1])  # (A, H) moments of those rows, in that order
            state["exp_avg_sq"] = p.new_zeros(0, p.shape[1])  # (A, H)
            # Product of all decay factors so far, and its value when each row was last brought up to date.
            state["decay_total"] = 1.0
            state["decay_applied"] = torch.ones(p.shape[0], dtype=torch.float64, device=p.device)  # (V,)
        return state

    @staticmethod
    def _catch_up(p: torch.Tensor, state: dict, rows: torch.Tensor) -> None:
        """Apply the decay that inactive ``rows`` (R,) missed since they were last up to date."""
        rows = rows[~state["active"][rows]]  # (R',) active rows are always up to date
        if rows.numel() == 0:
            return
        factor = state["decay_total"] / state["decay_applied"][rows]  # (R',) float64
        p.index_copy_(0, rows, p.index_select(0, rows) * factor.to(p.dtype).unsqueeze(1))
        state["decay_applied"][rows] = state["decay_total"]

    @torch.no_grad()
    def activate(self, p: torch.Tensor, state: dict, rows: torch.Tensor) -> None:
        """Make ``rows`` (R,) active: catch up their pending decay, give them zero moments."""
        self._catch_up(p, state, rows)
        new = rows[~state["active"][rows]].unique()  # (N,)
        touched = state["rows"].numel()  # A
        if new.numel():
            state["active"][new] = True
            state["slot"][new] = torch.arange(touched, touched + new.numel(), device=p.device)
            state["rows"] = torch.cat([state["rows"], new])  # (A + N,) appended: the old rows keep their slots
        needed = state["rows"].numel()
        if "grad_buffer" not in state or needed > state["grad_buffer"].shape[0]:  # (re)build, half again as large
            capacity = min(p.shape[0], max(needed, touched + touched // 2, 64))  # never past V rows
            for key in ("exp_avg", "exp_avg_sq"):
                buffer = p.new_zeros(capacity, p.shape[1])  # (C, H)
                buffer[:touched] = state[key]
                state[key + "_buffer"] = buffer
            state["grad_buffer"] = p.new_zeros(capacity, p.shape[1])  # (C, H), zero between steps
        for key in ("exp_avg", "exp_avg_sq"):  # views of the first A + N buffer rows: the new ones are zero
            state[key] = state[key + "_buffer"][:needed]

    def _lazy_step(self, group: dict, p: torch.Tensor, grad: torch.Tensor) -> None:
        if group["amsgrad"] or group["maximize"]:
            raise ValueError("lazy_rows supports plain AdamW only (no amsgrad, no maximize)")
        state = self._row_state(p)
        lr, wd, eps = _scalar(group["lr"]), group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        rows, values = _touched_rows(grad)  # (R,), (R, H)
        self.activate(p, state, rows)
        state["step"] += 1
        step = _scalar(state["step"])

        index = state["rows"]  # (A,)
        slots = state["slot"][rows]  # (R,) where the gradient's rows sit among the A
        g = state["grad_buffer"][: index.numel()]  # (A, H), all zero here
        g.index_copy_(0, slots, values.to(p.dtype))
        w = p.index_select(0, index)  # (A, H)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]  # (A, H) each, updated in place
        if group["fused"]:
            # Fast path: the arithmetic below in one pass of torch's fused AdamW kernel (it reads the
            # step count, already advanced above, and does not advance it again).
            torch._fused_adamw_([w], [g], [exp_avg], [exp_avg_sq], [], [state["step"].to(p.device)], lr=lr,
                                beta1=beta1, beta2=beta2, weight_decay=wd, eps=eps, amsgrad=False, maximize=False)
        else:
            # The same arithmetic, in the same order, as torch.optim.AdamW's single-tensor path.
            w.mul_(1 - lr * wd)
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = lr / (1 - beta1 ** step)
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
            w.addcdiv_(exp_avg, denom, value=-step_size)
        p.index_copy_(0, index, w)
        g.index_fill_(0, slots, 0)  # the gradient buffer is zero again for the next step
        state["decay_total"] *= 1 - lr * wd

    @torch.no_grad()
    def refresh_rows(self, p: torch.Tensor, ids: torch.Tensor) -> None:
        """Bring the rows a forward pass is about to read up to date (embedding pre-hook)."""
        state = self.state.get(p)
        if state and "active" in state:
            self._catch_up(p, state, ids.reshape(-1).unique().to(p.device))

    @torch.no_grad()
    def materialize(self) -> None:
        """Bring every row up to date, so the weights equal plain AdamW's (before eval and save)."""
        for group in self.param_groups:
            if group.get("lazy_rows"):
                for p in group["params"]:
                    state = self.state.get(p)
                    if state and "active" in state:
                        self._catch_up(p, state, torch.arange(p.shape[0], device=p.device))

    def attach(self, embedding: nn.Embedding) -> None:
        """Register the pre-hook that refreshes looked-up rows (replacing an older optimizer's hook)."""
        old = getattr(embedding, "_lazy_adamw_hook", None)
        if old is not None:
            old.remove()
        embedding._lazy_adamw_hook = embedding.register_forward_pre_hook(
            lambda module, args: self.refresh_rows(module.weight, args[0]))

    def state_dict(self) -> dict:
        """The saved state: exactly (A, H) moments (copies, not views of the buffers); no buffers, no slots."""
        saved = super().state_dict()
        for i, state in list(saved["state"].items()):
            if "slot" in state:  # a lazy-rows state
                saved["state"][i] = {key: (value.clone() if key in ("exp_avg", "exp_avg_sq") else value)
                                     for key, value in state.items()
                                     if key not in ("slot", "grad_buffer", "exp_avg_buffer", "exp_avg_sq_buffer")}
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        # Optimizer.load_state_dict casts every tensor to the param dtype: keep bool / long / float64 as saved.
        exact = {i: (s["active"], s.get("rows"), s["decay_applied"])
                 for i, s in state_dict["state"].items() if "active" in s}
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for i, (active, rows, applied) in exact.items():
            state, device = self.state[params[i]], params[i].device
            state["active"] = active.to(device, torch.bool)
            state["decay_applied"] = applied.to(device, torch.float64)
            if rows is None:  # saved with (V, H) moments: keep the touched rows'
                rows = state["active"].nonzero().squeeze(1)
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key].index_select(0, rows.to(device))
            state["rows"] = rows.to(device, torch.long)
            state["slot"] = torch.full_like(state["active"], -1, dtype=torch.long)
            state["slot"][state["rows"]] = torch.arange(state["rows"].numel(), device=device)


def _touched_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, values): the row ids with a gradient and their summed gradient rows."""
    if grad.is_sparse:
        grad = grad.coalesce()
        return grad.indices()[0], grad.values()  # (R,), (R, H)
    rows = grad.ne(0).any(dim=1).nonzero().squeeze(1)  # (R,) a zero row is exactly "untouched" for AdamW
    return rows, grad.index_select(0, rows)


def _scalar(x) -> float:
    return x.item() if torch.is_tensor(x) else float(x)


def materialize(optimizer) -> None:
    """Make the model weights exact before eval or save (a no-op for other optimizers)."""
    if hasattr(optimizer, "materialize"):
        optimizer.materialize()
