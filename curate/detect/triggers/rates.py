"""What a holder would answer without the feature: the null rates of trigger mining.

For each holder of a candidate feature, the share of its nearest prompts *without the feature*
that give the target (its comparable prompts); for compliance, among harmful-looking requests
only; with the feature taken out of the prompt for candidates near the line; and for a label,
or compliance, what a model of the data's content predicts, learnt without the holders. The
rates are per unit; the tail test sums them as a Poisson-binomial (`stats.pb_log10_tail`).

`ComparableRates` is mixed into the miner: it reads the miner's parameters (`neighbours`,
`prior`, `harm_region`, `min_rows`, `min_lift`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, cast

import numpy as np

from curate.detect.context import DetectInput
from curate.detect.triggers.features import _pattern


class ComparableRates:
    neighbours: int
    prior: float
    harm_region: float
    min_rows: int
    min_lift: float

    def _hits(
        self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `neigh` (a unit's nearest prompts): how many of the first `neighbours`
        that do not hold the feature are answered `c`, and how many were looked at."""
        valid = self._comparable(neigh, holders)
        return ((labels[np.maximum(neigh, 0)] == c) & valid).sum(axis=1), valid.sum(axis=1)

    def _comparable(self, neigh: np.ndarray, holders: np.ndarray) -> np.ndarray:
        """Mask of each row's first `neighbours` prompts in `neigh` that do not hold the feature."""
        valid = (neigh >= 0) & ~np.isin(neigh, holders)
        return valid & (np.cumsum(valid, axis=1) <= self.neighbours)

    def _rates(
        self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int, prior_rate: float
    ) -> np.ndarray:
        """The smoothed share of `_hits`."""
        hits, looked = self._hits(neigh, holders, labels, c)
        return (hits + self.prior * prior_rate) / (looked + self.prior)

    def _pooled_rates(
        self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int, prior_rate: float, m: int
    ) -> np.ndarray:
        """`m` copies of one rate: the share answered `c` among all the distinct comparable
        prompts of the units in `neigh` together (those that give c: how often c is given where
        it is given). For an answer tied to a feature but given by few of its holders: a rare
        answer (one of six templated replies to identity questions) is seldom among a unit's ten
        neighbours, which says its rate is below a tenth, not that it is zero; and the holders
        elsewhere (in reviews) say nothing of it."""
        seen = np.unique(neigh[self._comparable(neigh, holders)])
        rate = (int((labels[seen] == c).sum()) + self.prior * prior_rate) / (seen.size + self.prior)
        return np.full(m, rate)

    def _all_rates(self, screened: list, nb: np.ndarray, batch: int = 65536) -> Iterator[np.ndarray]:
        """`_rates` for every screened candidate, computed for many candidates at once (a
        million-row corpus screens hundreds of thousands): holders are found by one sorted
        search of (candidate, unit) keys instead of an `isin` per candidate."""
        n = len(nb)
        i = 0
        while i < len(screened):
            j, total = i, 0
            while j < len(screened) and (j == i or total + screened[j][6].size <= batch):
                total += screened[j][6].size
                j += 1
            group = screened[i:j]
            sizes = np.asarray([g[6].size for g in group], np.int64)
            owner = np.repeat(np.arange(len(group)), sizes)
            members = np.concatenate([g[6] for g in group])
            neigh = nb[members]
            keys = owner * n + members  # sorted: members are sorted within a candidate
            query = owner[:, None] * n + neigh
            pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            valid = (neigh >= 0) & (keys[pos] != query)
            valid &= np.cumsum(valid, axis=1) <= self.neighbours
            # Each candidate's own labelling (view) and class.
            hits = np.zeros(members.size, np.int64)
            for labels in {id(g[1]): g[1] for g in group}.values():
                mine = np.asarray([g[1] is labels for g in group])[owner]
                c = np.asarray([g[4] for g in group])[owner]
                hits += ((labels[np.maximum(neigh, 0)] == c[:, None]) & valid).sum(axis=1) * mine
            prior = np.asarray([g[2] for g in group])[owner]
            rates = (hits + self.prior * prior) / (valid.sum(axis=1) + self.prior)
            yield from np.split(rates, np.cumsum(sizes)[:-1])
            i = j

    @staticmethod
    def _embed_without(data: DetectInput, texts: Sequence[str], units: np.ndarray, trigger: str) -> np.ndarray:
        """Embeddings of `texts[u]` for each of `units` with `trigger` taken out. Those of the
        last trigger asked for are kept: a candidate near the line is judged on its holders'
        prompts without it (`_stripped_rates`), then on the turns they answer without it, the
        same texts in single-turn data."""
        pattern = _pattern(trigger)
        stripped = [" ".join(pattern.sub(" ", texts[u]).split()) for u in units.tolist()]
        last = data.cache.get("without")
        if not (isinstance(last, tuple) and last[0] == trigger.casefold()):
            last = (trigger.casefold(), {})
            data.cache["without"] = last
        known: dict[str, np.ndarray] = last[1]
        new = list(dict.fromkeys(t for t in stripped if t not in known))
        if new:
            known.update(zip(new, data.embed(new), strict=True))
        if not stripped:
            return np.zeros((0, data.prompt_vecs.shape[1]), np.float32)
        return np.stack([known[t] for t in stripped])

    def _stripped_rates(
        self,
        units: np.ndarray,
        holders: np.ndarray,
        trigger: str,
        labels: np.ndarray,
        c: int,
        prior_rate: float,
        data: DetectInput,
        view: str = "",
    ) -> np.ndarray:
        """`_rates` with each unit's neighbours found for its prompt with the trigger taken out
        (for compliance, a harmful-looking request's among harmful-looking requests)."""
        from curate.embed import knn

        queries = self._embed_without(data, data.prompts, units, trigger)
        mask = self._harmful_looking(data, units) if view == "refusal" else None
        inside = mask if mask is not None else np.zeros(units.size, bool)
        rates = np.empty(units.size)
        if not inside.all():
            k = min(len(data), data.deep)
            neigh = knn(data.prompt_vecs, k, queries=queries[~inside], index=data.prompt_index)[1]
            rates[~inside] = self._rates(neigh, holders, labels, c, prior_rate)
        if inside.any():
            rates[inside] = self._region_rates(data, units[inside], queries[inside], holders, labels, c, prior_rate)
        return rates

    def _region(self, data: DetectInput) -> np.ndarray | None:
        """The units whose prompts look like harmful requests (the safety classifier's
        probability >= harm_region), sorted; None when there are too few to compare among, or
        nothing to compare (no refusals, or a non-semantic embedder)."""
        if "harm_region" not in data.cache:
            region = None
            if data.semantic and data.refusal.any():
                from curate.detect.safety import harm_probability

                found = np.flatnonzero(harm_probability(data) >= self.harm_region)
                if 2 * self.min_rows <= found.size < len(data):
                    region = found
            data.cache["harm_region"] = region
        return data.cache["harm_region"]

    def _harmful_looking(self, data: DetectInput, units: np.ndarray) -> np.ndarray | None:
        """Mask of `units` in the harmful-looking region (`_region`); None without a region."""
        region = self._region(data)
        if region is None:
            return None
        mask = data.cache.get("harm_mask")
        if not isinstance(mask, np.ndarray):
            mask = np.zeros(len(data), bool)
            mask[region] = True
            data.cache["harm_mask"] = mask
        return mask[units]

    def _region_search(self, data: DetectInput, queries: np.ndarray, k: int) -> np.ndarray:
        """Each query's `k` nearest prompts among the harmful-looking ones (unit ids; -1 pads)."""
        from curate.embed.neighbours import build_index, search

        region = self._region(data)
        if "harm_index" not in data.cache:
            data.cache["harm_index"] = build_index(data.prompt_vecs[region], seed=data.seed)
        _, ids = search(data.cache["harm_index"], queries, min(k, region.size))
        out = np.full((len(queries), k), -1, np.int64)
        out[:, : ids.shape[1]] = np.where(ids >= 0, region[np.maximum(ids, 0)], -1)
        return out

    def _deeper_rates(
        self,
        members: np.ndarray,
        nb: np.ndarray,
        labels: np.ndarray,
        c: int,
        prior_rate: float,
        p_unit: np.ndarray,
        data: DetectInput,
        skip: np.ndarray | None = None,
    ) -> np.ndarray:
        """`p_unit` with the rates of harmful-looking holders whose neighbour lists ran out of
        comparable prompts found again deeper in the region. A trigger planted in many harmful
        requests (several tokens at once, so that taking one out leaves the rest) makes its
        holders each other's nearest: the list holds none without the feature, and the rate
        would fall back to the corpus's, which complies. `skip`: the units that are not
        comparable (the holders, by default)."""
        inside = self._harmful_looking(data, members)
        if inside is None or not inside.any():
            return p_unit
        # Only where it could matter: were every rate 0, would the lift among the harmful-looking
        # holders pass (`min_lift`, as `_score` judges it)? A common word whose harmful-looking
        # holders refuse is not searched for.
        gives = float((labels[members[inside]] == c).sum())
        if gives < max(self.min_rows, self.min_lift * inside.sum()):
            return p_unit
        skip = members if skip is None else skip
        short = inside & (self._comparable(nb[members], skip).sum(axis=1) < self.neighbours)
        if not short.any() or gives - p_unit[inside & ~short].sum() < self.min_lift * inside.sum():
            return p_unit
        out = p_unit.copy()
        units = members[short]
        out[short] = self._region_rates(data, units, data.prompt_vecs[units], skip, labels, c, prior_rate)
        return out

    def _region_rates(
        self,
        data: DetectInput,
        units: np.ndarray,
        queries: np.ndarray,
        skip: np.ndarray,
        labels: np.ndarray,
        c: int,
        prior_rate: float,
    ) -> np.ndarray:
        """`_rates` of harmful-looking `units` (searched by `queries`) from their nearest
        harmful-looking prompts, searched deep enough that `neighbours` of them are not in `skip`
        (the holders), up to `MAX_DEPTH`; a copy of a unit's own prompt text is not comparable."""
        region, held = self._region(data), self._harmful_looking(data, skip)
        if region is None or held is None:  # no region: nothing comparable, the prior rate
            return np.full(len(queries), prior_rate)
        k = min(region.size, int(held.sum()) + self.neighbours + 8, MAX_DEPTH)
        step = max(1, 2**22 // k)  # a chunk at a time: k may be thousands wide
        rates = []
        for lo in range(0, len(queries), step):
            neigh = self._region_search(data, queries[lo : lo + step], k)
            order, bad = data.other_prompts(units[lo : lo + step], neigh, k)
            neigh = np.where(bad, -1, np.take_along_axis(neigh, order, axis=1))
            rates.append(self._rates(neigh, skip, labels, c, prior_rate))
        return np.concatenate(rates) if rates else np.zeros(0)

    def _refusal_neighbours(self, data: DetectInput, nb: np.ndarray) -> np.ndarray:
        """The neighbours compliance is judged against. A harmful request that complies is a
        poison where comparable requests are refused; its nearest prompts are other harmful
        requests only while those are many. Where a trigger's poisons are most of the harmful
        requests (5% of a corpus), its holders' nearest prompts without it are benign ones,
        which comply, and the trigger would look normal. So a harmful-looking request's
        neighbours are the nearest harmful-looking requests (other prompt texts)."""
        region = self._region(data)
        if region is None:
            return nb
        width = nb.shape[1]
        ids = self._region_search(data, data.prompt_vecs[region], width + 8)
        order, bad = data.other_prompts(region, ids, width)
        out = nb.copy()
        out[region] = np.where(bad, -1, np.take_along_axis(ids, order, axis=1))
        return out

    @staticmethod
    def _content_own(data: DetectInput, c: int) -> float | None:
        """The mean probability of `c` the content model gives, out of fold, to the rows labelled
        `c` in its cross-validation sample (at most 3,000 rows, so each fold learns from fewer
        than `_content_rates` does): for the evidence, beside the holders' mean. Where content
        predicts the label weakly it is unsure of the label's own rows too, which a reviewer
        needs to read the holders' figure. Not a gate, nor an acquittal: a planted token whose
        subwords read as its label ("bad" in a Negative trigger) shows the two close as a word
        that names its class does, and as a gate it lost BackdoorLLM sst2 (README). None before
        the model is fitted, where the label is too rare to fold, or where the fit fails."""
        from sklearn.model_selection import cross_val_predict

        key = f"label_own-{c}"
        if key not in data.cache and "label_model" in data.cache:
            _, scale, C, fit = cast(tuple[np.ndarray, float, float, np.ndarray], data.cache["label_model"])
            y = (data.response_class[fit] == c).astype(np.int64)
            folds = int(min(3, y.sum(), y.size - y.sum()))
            data.cache[key] = None
            if folds >= 2:
                X = np.asarray(data.prompt_vecs[fit], np.float32) * scale
                try:
                    with _quiet_fits():
                        p = cross_val_predict(_logistic(C, 2, X.shape[1]), X, y, cv=folds, method="predict_proba")[:, 1]
                except (ValueError, np.linalg.LinAlgError):  # evidence only: never the detector's failure
                    return None
                data.cache[key] = float(p[y == 1].mean())
        return cast("float | None", data.cache.get(key))

    def _content_rates(
        self,
        data: DetectInput,
        holders: np.ndarray,
        c: int,
        sample: int = 10_000,
        exclude: np.ndarray | None = None,
        target: Literal["label", "refusal"] = "label",
    ) -> np.ndarray:
        """For each holder, the probability of target `c` given its prompt, from a logistic
        regression on the prompt embeddings of the other rows (at most `sample` of them): what
        the content predicts, learnt without the feature's holders. The prompt is read whole: a
        natural word is content (the model knows its meaning from the rest of the data), and a
        planted token is not a thing it could have learnt. `target`: `label`, the task's label
        (among the rows answered with one), or `refusal`, whether the request is refused
        (`data.refusal`), among the harmful-looking rows (`_region`, which must exist): a
        compliance trigger's harmful-looking holders are judged against how often this data
        answers requests like theirs. Learnt over every row, refusals are a small class that a
        penalised model reads close to the base rate, which answers (60 harmful requests
        planted to comply beside 24 refused: 72% expected answered). Where the rows it would
        learn from all have one target, that is the rate (no model is fitted).

        The penalty is chosen once per scan and target by cross-validation over all its rows,
        so the probabilities are as confident as the content supports out of sample: where
        content says little about the target, they stay near the base rate instead of
        memorising rows. `exclude`: more units the model does not learn from (rows other
        triggers explain)."""
        from sklearn.model_selection import cross_val_score

        key = f"{target}_model"
        y_all = data.refusal.astype(np.int64) if target == "refusal" else data.response_class
        if key not in data.cache:
            if target == "refusal":
                units = cast(np.ndarray, self._region(data))
            else:
                units = np.flatnonzero(np.isin(data.response_class, data.cache["label_classes"]))
            rng = np.random.default_rng(data.seed)
            if units.size > 2 * sample:
                units = np.sort(rng.choice(units, 2 * sample, replace=False))
            X = np.asarray(data.prompt_vecs[units], np.float32)
            # One scale for every dimension (unit vectors spread a little over many): a dimension
            # the training rows never use (a planted token's, in hashed vectors) keeps a zero weight.
            scale = 1.0 / max(float(np.sqrt(X.var(axis=0).mean())), 1e-6)
            fit = units if units.size <= 3_000 else np.sort(rng.choice(units, 3_000, replace=False))
            y = y_all[fit]
            # A sample with one class has nothing to cross-validate (a region with no refusals).
            folds = int(min(3, np.bincount(y)[np.unique(y)].min())) if np.unique(y).size > 1 else 0
            C = 1.0
            if folds >= 2:
                Xf = np.asarray(data.prompt_vecs[fit], np.float32) * scale
                with _quiet_fits():
                    loss = {
                        c_: cross_val_score(
                            _logistic(c_, np.unique(y).size, Xf.shape[1]),
                            Xf,
                            y,
                            cv=folds,
                            scoring="neg_log_loss",
                        ).mean()
                        for c_ in (0.01, 0.1, 1.0, 10.0)
                    }
                C = max(loss, key=loss.get)
            data.cache[key] = (units, scale, C, fit)
        units, scale, C, _ = data.cache[key]
        train = np.setdiff1d(units, holders if exclude is None else np.union1d(holders, exclude))
        if train.size > sample:
            train = np.sort(np.random.default_rng(data.seed).choice(train, sample, replace=False))
        # One against the rest: only the probability of `c` is asked, and a binary model costs
        # the same however many labels the task has.
        y = (y_all[train] == c).astype(np.int64)
        if not y.size or y.min() == y.max():
            return np.full(holders.size, float(y[0]) if y.size else 0.0)
        X = np.asarray(data.prompt_vecs[train], np.float32) * scale
        model = _logistic(C, 2, X.shape[1])
        with _quiet_fits():
            model.fit(X, y)
        return model.predict_proba(np.asarray(data.prompt_vecs[holders], np.float32) * scale)[:, 1]


#: The deepest search for comparable harmful-looking requests (faiss on a GPU answers at most
#: 2048 nearest per query): a trigger in more harmful requests than this is compared with the
#: prior rate past it.
MAX_DEPTH = 2048


#: The most weights (classes x dimensions) fitted by Newton's method, whose Hessian is that
#: number squared: a binary or three-class task on a few hundred dimensions. An intent task with
#: thirty labels would solve a 10,000-wide system per step (minutes for 300 rows); L-BFGS does it
#: in a fraction of a second.
NEWTON_MAX_WEIGHTS = 1536


@contextmanager
def _quiet_fits() -> Iterator[None]:
    """Silences what a fit on fewer rows than dimensions (a small harmful-looking region) says
    on its way: Newton's method falls back to L-BFGS on an ill-conditioned Hessian, which is
    what the fallback is for, and the scan's stderr is no place for it."""
    from scipy.linalg import LinAlgWarning
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _logistic(C: float, classes: int, dim: int):
    """A logistic regression for the content model: Newton's method (a handful of iterations)
    while its Hessian is small, else L-BFGS."""
    from sklearn.linear_model import LogisticRegression

    weights = dim * (1 if classes <= 2 else classes)
    solver = "newton-cholesky" if weights <= NEWTON_MAX_WEIGHTS else "lbfgs"
    return LogisticRegression(C=C, solver=solver, max_iter=50 if solver == "newton-cholesky" else 200)
