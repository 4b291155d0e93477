"""The on-disk contract: every path a recipe reads or writes is built here, and nowhere else.

    data/RECIPE/manifests/CORPUS_{recordings,supervisions}_SPLIT.jsonl.gz   stage 0 (lhotse naming)
    data/RECIPE/pseudo/RECIPE_supervisions_UNLABELLED-pl.jsonl.gz           stage 1 (+ _report.yaml)
    data/RECIPE/cuts/RECIPE_cuts_UNLABELLED-{chunks,validated,teacher,k2d_METRIC}.jsonl.gz   stages 2-5
    data/RECIPE/filter_report/                                              stage 4
    data/CORPUS/manifests/...                  a corpus that is only a test set (prepared with its own
                                               egs/test_sets/CORPUS/conf/prepare.yaml)
    exp/RECIPE/{teacher,validator,student_METRIC}/decode_SET[_short]/      stages 5-6
    exp/RECIPE/RESULTS.md                                                  stage 7
    exp/RECIPE/log/JOB/task-I.{log,status}     the jobs k2d.launch ran (--cmd local|slurm)

The ESPnet recipes of seeds 002 and 003 (egs/mini_cs_mtkd, egs/mini_cs_streaming; `EspnetLayout`) train
on the mini_cs corpus's manifests:

    data/CORPUS/manifests/...                  the corpus (its own recipe's stage 0)
    data/RECIPE/cuts/RECIPE_cuts_NAME.jsonl.gz  the recipe's cut manifests (NAME: finetune, valid, pretrain, extra)
    data/RECIPE/espnet/NAME/                   ESPnet data directories (asr_SET, emb_AUDIO)
    data/RECIPE/embeddings/SET.jsonl.gz        teacher embeddings (seed 002)
    data/RECIPE/tokens/                        sentencepiece model and ESPnet token list
    exp/RECIPE/{pretrain,asr}_SYSTEM/          ESPnet training runs; exp/RECIPE/RESULTS.md

A recipe (egs/RECIPE/conf/recipe.yaml, `RecipeConfig`) names its unlabelled split, models, filter metrics
and test sets; a test set is a split of the recipe's own corpus (`test_in`) or CORPUS:SPLIT of another one
(`ascend:test_long`). The shell asks for everything at once:

    python -m k2d.layout --recipe mini_cs --work-dir . [--conf-dir egs/mini_cs/conf]   # "key value" lines
    python -m k2d.layout --recipe mini_cs_mtkd --work-dir . --espnet
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from k2d.config import ConfigError, build_config, load_yaml, option

MANIFEST_PATTERN = "{corpus}_{kind}_{split}.jsonl.gz"
# The cut manifests of the ESPnet recipes: fine-tuning utterances, dev utterances, pre-training audio, extra audio
ESPNET_CUT_SETS = ("finetune", "valid", "pretrain", "extra")
ESPNET_TEST_SETS = ("test_in", "test_ood")  # splits of the corpus, each utterance decoded on its own
ESPNET_DEV_SET = "dev"  # the corpus's dev split: ESPnet validates on its first utterances, stage 4 decodes it all


def manifest_path(directory: Path, corpus: str, kind: str, split: str) -> Path:
    """lhotse's naming of a manifest: CORPUS_KIND_SPLIT.jsonl.gz (kind: recordings, supervisions, cuts)."""
    return Path(directory) / MANIFEST_PATTERN.format(corpus=corpus, kind=kind, split=split)


@dataclass
class RecipeConfig:
    unlabelled_split: str = option("", "the split of long-form audio without transcripts that stage 1 labels")
    test_sets: list[str] = option([], "SPLIT of this recipe's corpus or CORPUS:SPLIT of another, decoded in stage 6")
    teacher: str = option("", "teacher: Hub id, directory, or installed name (whisper-base)")
    validator: str = option("", "validator: Hub id, directory, or installed name")
    filter_metrics: list[str] = option(["composite"], "one student per metric: none ngram mer per composite")
    decode_modes: list[str] = option(["long"], "long (whole recordings) and/or short (each utterance)")
    truth: str = option("", "true supervisions of the unlabelled split under data/RECIPE (filter report only)")
    dev_set: str = option(
        "", "SPLIT of this recipe's corpus with references, in the target domain: stage 5 decodes it long-form "
        "during training and keeps the best checkpoint by its MER (empty: held-out chunks, short-form)")

    def __post_init__(self):
        from k2d.metrics.distances import METRICS

        if not self.unlabelled_split:
            raise ConfigError("unlabelled_split is required")
        bad = [m for m in self.filter_metrics if m not in METRICS]
        if bad:
            raise ConfigError(f"filter_metrics: unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRICS)}")
        bad = [m for m in self.decode_modes if m not in ("long", "short")]
        if bad:
            raise ConfigError(f"decode_modes: {', '.join(bad)} is not long or short")
        bad = [s for s in self.test_sets if s.count(":") > 1 or not all(s.split(":"))]
        if bad:
            raise ConfigError(f"test_sets: {', '.join(bad)} is not SPLIT or CORPUS:SPLIT")


@dataclass(frozen=True)
class TestSet:
    corpus: str
    split: str
    own: bool  # a split of the recipe's own corpus

    @property
    def name(self) -> str:
        """How results name it: the split for the recipe's own corpus, else CORPUS_SPLIT."""
        return self.split if self.own else f"{self.corpus}_{self.split}"


@dataclass(frozen=True)
class Layout:
    recipe: str
    work_dir: Path
    corpus: str  # the preparer of the recipe's own data, and its manifests' prefix
    config: RecipeConfig

    @property
    def data(self) -> Path:
        return self.work_dir / "data" / self.recipe

    @property
    def exp(self) -> Path:
        return self.work_dir / "exp" / self.recipe

    def corpus_data(self, corpus: str) -> Path:
        return self.data if corpus == self.corpus else self.work_dir / "data" / corpus

    def manifest(self, kind: str, split: str, corpus: str | None = None) -> Path:
        corpus = corpus or self.corpus
        return manifest_path(self.corpus_data(corpus) / "manifests", corpus, kind, split)

    def _work(self, directory: str, kind: str, suffix: str) -> Path:
        return self.data / directory / f"{self.recipe}_{kind}_{self.config.unlabelled_split}-{suffix}.jsonl.gz"

    @property
    def pseudo_labels(self) -> Path:
        return self._work("pseudo", "supervisions", "pl")

    @property
    def chunks(self) -> Path:
        return self._work("cuts", "cuts", "chunks")

    @property
    def validated(self) -> Path:
        return self._work("cuts", "cuts", "validated")

    @property
    def teacher_cache(self) -> Path:
        return self._work("cuts", "cuts", "teacher")

    def kept(self, metric: str = "{metric}") -> Path:
        return self._work("cuts", "cuts", f"k2d_{metric}")

    @property
    def filter_report(self) -> Path:
        return self.data / "filter_report"

    @property
    def logs(self) -> Path:
        return self.exp / "log"

    def student(self, metric: str) -> Path:
        return self.exp / f"student_{metric}"

    def decode_dir(self, model: str, test_set: str, mode: str = "long") -> Path:
        return self.exp / model / f"decode_{test_set}{'_short' if mode == 'short' else ''}"

    @property
    def test_sets(self) -> list[TestSet]:
        sets = []
        for entry in self.config.test_sets:
            corpus, _, split = entry.rpartition(":")
            sets.append(TestSet(corpus or self.corpus, split, not corpus or corpus == self.corpus))
        return sets

    def models(self) -> list[tuple[str, str]]:
        """Every model of the recipe as (name, path), the teacher first (the results' reference)."""
        rows = [("teacher", self.config.teacher), ("validator", self.config.validator)]
        return rows + [(f"student_{m}", str(self.student(m) / "best")) for m in self.config.filter_metrics]

    def scored_sets(self) -> list[str]:
        """The result columns: each test set per decoding mode, as stage 6 names its directories."""
        return [t.name + ("_short" if mode == "short" else "") for mode in self.config.decode_modes
                for t in self.test_sets]

    def shell(self) -> list[tuple[str, str]]:
        """What run.sh needs, as (key, value); lists are space-separated."""
        c = self.config
        rows = [
            ("corpus", self.corpus), ("data", self.data), ("exp", self.exp), ("manifests", self.data / "manifests"),
            ("unlabelled", c.unlabelled_split), ("unlabelled_recordings", self.manifest("recordings",
                                                                                        c.unlabelled_split)),
            ("pseudo", self.pseudo_labels), ("chunks", self.chunks), ("validated", self.validated),
            ("teacher_cache", self.teacher_cache), ("kept_pattern", self.kept()),
            ("filter_report", self.filter_report), ("logs", self.logs),
            ("truth", self.data / c.truth if c.truth else ""),
            ("teacher", c.teacher), ("validator", c.validator), ("metrics", " ".join(c.filter_metrics)),
            ("decode_modes", " ".join(c.decode_modes)), ("test_sets", " ".join(t.name for t in self.test_sets)),
            ("other_corpora", " ".join(sorted({t.corpus for t in self.test_sets if not t.own}))),
            ("models", " ".join(f"{name}={path}" for name, path in self.models())),
            ("scored_sets", " ".join(self.scored_sets())),
            ("dev_recordings", self.manifest("recordings", c.dev_set) if c.dev_set else ""),
            ("dev_supervisions", self.manifest("supervisions", c.dev_set) if c.dev_set else ""),
            ("bench_recordings", self.manifest("recordings", self.test_sets[0].split, self.test_sets[0].corpus)
             if self.test_sets else ""),
            ("bench_supervisions", self.manifest("supervisions", self.test_sets[0].split, self.test_sets[0].corpus)
             if self.test_sets else ""),
        ]
        for model, _ in self.models():
            for test_set in self.test_sets:
                for mode in c.decode_modes:
                    rows.append((f"decode_dir:{model}:{test_set.name}:{mode}", self.decode_dir(model, test_set.name,
                                                                                             mode)))
        for test_set in self.test_sets:
            rows.append((f"recordings:{test_set.name}", self.manifest("recordings", test_set.split, test_set.corpus)))
            rows.append((f"supervisions:{test_set.name}",
                         self.manifest("supervisions", test_set.split, test_set.corpus)))
        for corpus in {t.corpus for t in self.test_sets if not t.own}:
            rows.append((f"data:{corpus}", self.corpus_data(corpus)))
            rows.append((f"corpus_config:{corpus}", test_corpus_config(corpus)))
        return [(key, str(value)) for key, value in rows]


@dataclass(frozen=True)
class EspnetLayout:
    """The paths of an ESPnet recipe (seeds 002 and 003) over the manifests of `corpus`."""

    recipe: str
    work_dir: Path
    corpus: str = "mini_cs"

    @property
    def data(self) -> Path:
        return self.work_dir / "data" / self.recipe

    @property
    def exp(self) -> Path:
        return self.work_dir / "exp" / self.recipe

    @property
    def manifests(self) -> Path:
        return self.work_dir / "data" / self.corpus / "manifests"

    def cuts(self, name: str) -> Path:
        return manifest_path(self.data / "cuts", self.recipe, "cuts", name)

    def shell(self) -> list[tuple[str, str]]:
        rows = [("corpus", self.corpus), ("manifests", self.manifests),
                ("data", self.data), ("exp", self.exp), ("cuts_dir", self.data / "cuts"),
                ("espnet", self.data / "espnet"), ("embeddings", self.data / "embeddings"),
                ("tokens", self.data / "tokens"), ("logs", self.exp / "log")]
        rows += [(f"cuts:{name}", self.cuts(name)) for name in ESPNET_CUT_SETS]
        rows += [(f"{kind}:{split}", manifest_path(self.manifests, self.corpus, kind, split))
                 for split in (ESPNET_DEV_SET, *ESPNET_TEST_SETS) for kind in ("recordings", "supervisions")]
        rows += [("dev_set", ESPNET_DEV_SET), ("test_sets", " ".join(ESPNET_TEST_SETS))]
        return [(key, str(value)) for key, value in rows]


def test_corpus_config(corpus: str) -> Path:
    """The prepare.yaml of a corpus that only gives test sets (egs/test_sets/CORPUS, not a recipe)."""
    return Path("egs") / "test_sets" / corpus / "conf" / "prepare.yaml"


def preparer_name(prepare_config: Path, default: str) -> str:
    """The corpus preparer a prepare.yaml names (`preparer:`), else the recipe's own name."""
    if not Path(prepare_config).is_file():
        return default
    return str(load_yaml(prepare_config).get("preparer", default))


def load_layout(recipe: str, work_dir: Path, conf_dir: Path | None = None, **overrides) -> Layout:
    """The recipe's layout; `overrides` (teacher, validator, filter_metrics) replace recipe.yaml's values."""
    conf_dir = Path(conf_dir) if conf_dir else Path("egs") / recipe / "conf"
    path = conf_dir / "recipe.yaml"
    values = {**load_yaml(path), **{k: v for k, v in overrides.items() if v}}
    config = build_config(RecipeConfig, values, f"config {path}")
    return Layout(recipe, Path(work_dir), preparer_name(conf_dir / "prepare.yaml", recipe), config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--work-dir", type=Path, default=Path("."))
    parser.add_argument("--conf-dir", type=Path, help="default: egs/RECIPE/conf")
    parser.add_argument("--teacher", help="instead of recipe.yaml's teacher")
    parser.add_argument("--validator", help="instead of recipe.yaml's validator")
    parser.add_argument("--metrics", help="instead of recipe.yaml's filter_metrics (space- or comma-separated)")
    parser.add_argument("--espnet", action="store_true", help="an ESPnet recipe of seed 002 or 003 (EspnetLayout)")
    args = parser.parse_args(argv)
    if args.espnet:
        for key, value in EspnetLayout(args.recipe, args.work_dir).shell():
            print(f"{key} {value}")
        return 0
    metrics = args.metrics.replace(",", " ").split() if args.metrics else None
    try:
        layout = load_layout(args.recipe, args.work_dir, args.conf_dir, teacher=args.teacher,
                             validator=args.validator, filter_metrics=metrics)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, value in layout.shell():
        print(f"{key} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
