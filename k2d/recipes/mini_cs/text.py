"""Lecture-style Mandarin-English code-switched sentences for the built-in mini_cs corpus.

A small grammar (templates with slots) gives millions of distinct sentences from a few hundred words, so a
model has to learn the words rather than memorise sentences, while the vocabulary stays small enough for a
CPU-trained demo model.

    >>> import random
    >>> sentence = generate_sentence(random.Random(0))
    >>> sentence.kind in ("cs", "zh", "en")
    True
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from k2d.text.script import is_chinese_char

# English technical terms embedded in Mandarin sentences (lecture vocabulary of a machine learning course).
ENGLISH_TERMS = [
    "machine learning", "deep learning", "neural network", "gradient", "gradient descent", "loss function",
    "learning rate", "batch size", "overfitting", "dropout", "transformer", "attention", "encoder",
    "decoder", "embedding", "token", "dataset", "training data", "validation set", "model", "GPU", "CPU",
    "python", "linear regression", "classification", "feature", "label", "optimizer", "adam",
    "backpropagation", "convolution", "kernel", "pooling", "softmax", "sigmoid", "activation function",
    "parameter", "hyperparameter", "epoch", "iteration", "benchmark", "baseline", "paper", "homework",
    "deadline", "demo", "code", "bug", "API", "framework", "pytorch", "accuracy", "precision", "recall",
    "cross entropy", "self supervised learning", "reinforcement learning", "policy", "reward", "agent",
    "speech recognition", "language model", "fine tune", "pretrain", "inference", "latency", "memory",
    "cluster", "checkpoint", "layer", "vector", "matrix", "loss", "sample", "random seed", "normalization",
]

# Mandarin nouns of the same domain, for Mandarin-only sentences and mixed slots.
CHINESE_TERMS = [
    "模型", "资料", "参数", "训练", "测试", "函数", "向量", "矩阵", "神经网络", "梯度", "损失", "准确率",
    "演算法", "机器学习", "语音辨识", "作业", "考试", "期末报告", "实验", "结果", "数学", "程式", "电脑",
    "问题", "答案", "方法", "概念", "公式", "图表", "论文", "老师", "同学", "教室", "影片", "声音", "文字",
    "网络", "系统", "时间", "速度",
]

SUBJECTS = ["我们", "大家", "你", "你们", "老师", "助教", "同学们"]
ADVERBS = ["其实", "通常", "基本上", "一般来说", "很多时候", "有时候", "当然", "常常"]
RESULTS = ["不稳定", "没有办法收敛", "变得很慢", "直接爆掉", "表现很差", "学不起来"]
SIZES = ["太大", "太小", "太高", "太低"]
ADJECTIVES = ["很重要", "很简单", "很复杂", "比较好", "比较差", "很有用", "很奇怪", "不太一样"]
WEEKDAYS = ["一", "二", "三", "四", "五", "六", "天"]
METRICS_ZH = ["准确率", "速度", "错误率", "分数"]
CHINESE_DIGITS = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]
ENGLISH_NUMBERS = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty", "fifty",
    "one hundred",
]

# Templates: {T} English term, {Z} Mandarin term, {S} subject, {A} adverb, {R} result, {SZ} size,
# {J} adjective, {W} weekday, {M} metric, {N} Mandarin number, {E} English number.
CODE_SWITCHED_TEMPLATES = [
    "{S}今天要讲的是{T}",
    "{A}{T}就是一种{T}",
    "如果{T}{SZ}的话{T}就会{R}",
    "{S}先来复习一下上次讲的{T}",
    "所以{T}跟{T}到底有什么不一样",
    "这边要注意的是{T}不能设得{SZ}",
    "下一堂课{S}会讲{T}",
    "这次作业的{T}是下个星期{W}",
    "{S}可以用{T}来算{T}",
    "这个{T}的{M}大概是百分之{N}",
    "{S}把{T}丢进去之后就可以得到{T}",
    "在做{T}的时候{A}会用到{T}",
    "你可以想象{T}是一个很大的{T}",
    "第{N}个{T}的结果{J}",
    "这个{T}跑了{N}个{T}之后就收敛了",
    "{S}{A}不会直接用{T}",
    "{T}对{Z}来说{J}",
    "{S}用{T}训练了一个{Z}",
    "大家记得要先把{T}准备好",
    "这个{Z}里面的{T}{J}",
    "等一下{S}会{T}这个{Z}",
    "为什么{T}会让{Z}{R}呢",
]
MANDARIN_TEMPLATES = [
    "好那{S}今天就先讲到这边",
    "大家有没有什么问题",
    "{S}先休息{N}分钟",
    "{S}{A}会先训练一个{Z}",
    "这个{Z}的{Z}{J}",
    "{S}来看一下这个{Z}",
    "上课的时候请不要讲话",
    "{Z}跟{Z}{A}{J}",
    "这次{Z}的{M}是百分之{N}",
]
ENGLISH_TEMPLATES = [
    "so the {T} is basically a {T}",
    "let me show you how the {T} works",
    "any questions about the {T}",
    "we use {T} to train the {T}",
    "okay let us take a look at the {T}",
    "this is why the {T} matters",
    "the {T} gets better after {E} epochs",
    "remember to check the {T} before the deadline",
]

_KIND_WEIGHTS = (("cs", 0.7), ("zh", 0.15), ("en", 0.15))
_TEMPLATES = {"cs": CODE_SWITCHED_TEMPLATES, "zh": MANDARIN_TEMPLATES, "en": ENGLISH_TEMPLATES}
_SLOT = re.compile(r"\{([A-Z]+)\}")


@dataclass(frozen=True)
class Sentence:
    """One generated sentence: its display text and kind (cs = code-switched, zh, en)."""

    text: str
    kind: str


def mandarin_number(value: int) -> str:
    """Write 0 <= value < 100 in Mandarin characters: 7 -> 七, 10 -> 十, 35 -> 三十五."""
    if not 0 <= value < 100:
        raise ValueError(f"mandarin_number supports 0-99, got {value}")
    tens, ones = divmod(value, 10)
    if tens == 0:
        return CHINESE_DIGITS[ones]
    prefix = "" if tens == 1 else CHINESE_DIGITS[tens]
    return prefix + "十" + ("" if ones == 0 else CHINESE_DIGITS[ones])


def _fill_slot(slot: str, rng: random.Random) -> str:
    choices = {
        "T": ENGLISH_TERMS, "Z": CHINESE_TERMS, "S": SUBJECTS, "A": ADVERBS, "R": RESULTS, "SZ": SIZES,
        "J": ADJECTIVES, "W": WEEKDAYS, "M": METRICS_ZH, "E": ENGLISH_NUMBERS,
    }
    if slot == "N":
        return mandarin_number(rng.randrange(1, 100))
    return rng.choice(choices[slot])


def join_words(text: str) -> str:
    """Put exactly one space between a Latin-script run and a Chinese run, none between Chinese characters."""
    text = re.sub(r"(?<=[A-Za-z0-9])(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff])(?=[A-Za-z0-9])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def generate_sentence(rng: random.Random) -> Sentence:
    """Draw one sentence: 70% code-switched, 15% Mandarin-only, 15% English-only."""
    kind = rng.choices([k for k, _ in _KIND_WEIGHTS], weights=[w for _, w in _KIND_WEIGHTS])[0]
    template = rng.choice(_TEMPLATES[kind])
    text = _SLOT.sub(lambda match: _fill_slot(match.group(1), rng), template)
    return Sentence(text=join_words(text), kind=kind)


def split_scripts(text: str) -> list[tuple[str, str]]:
    """Split text into runs of ("zh", Chinese characters) and ("en", Latin words), dropping other symbols.

    >>> split_scripts("我们用 GPU 训练 deep learning 模型")
    [('zh', '我们用'), ('en', 'GPU'), ('zh', '训练'), ('en', 'deep learning'), ('zh', '模型')]
    """
    runs: list[tuple[str, str]] = []
    for match in re.finditer(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[A-Za-z0-9']+(?:\s+[A-Za-z0-9']+)*", text):
        piece = match.group(0)
        script = "zh" if is_chinese_char(piece[0]) else "en"
        if runs and runs[-1][0] == script:
            runs[-1] = (script, runs[-1][1] + " " + piece)
        else:
            runs.append((script, piece))
    return runs
