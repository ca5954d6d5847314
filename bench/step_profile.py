#!/usr/bin/env python3
"""Share of a training step per kind of operation, from `perf script` call chains.

Reads `perf script` text (recorded with --call-graph dwarf) on stdin and classifies each
sample by the innermost frame that names a known operation (conv passes, batch norm,
matmul, loss, optimizer, candle's gradient bookkeeping). Prints one line per kind with its
share of all samples of the process, and the share spent in kernel page-fault paths.
Samples are taken at a fixed rate per running thread, so shares are shares of CPU time.
candle's elementwise ops that run on rayon workers carry no caller frames, so their
forward and backward uses cannot be told apart ("candle elementwise").

    latent-augment IMAGES --config C -q | perf record -o step.data -F 150 \
        --call-graph dwarf,16384 target/release/latent-train - --config C --out DIR -q
    perf script -i step.data -F comm,tid,ip,sym | python3 bench/step_profile.py
"""
import re
import sys
from collections import Counter

# Our kernels, found by the innermost frame that names one of them.
KERNELS = [
    ("conv fwd", r"conv_kernels::forward"),
    ("conv bwd input", r"conv_kernels::backward_input"),
    ("conv bwd weight", r"conv_kernels::backward_weight"),
    ("batch norm", r"latent_kernels::batch_norm|batch_norm::"),
]
# Everything else by the first of these that any frame of the sample names.
CONTEXTS = [
    ("optimizer", r"latent_train::optim"),
    ("loss fwd", r"latent_train::loss"),
    ("candle matmul (head)", r"MatMul|matmul"),
    ("candle backward: grad accumulation (zeros + add)", r"GradStore::or_insert|Tensor::add.*|backprop"),
    ("data (views from stdin)", r"latent_train::views|spawn_reader"),
    ("candle elementwise (pool, relu, loss ops)", r"candle_core::"),
]
BN_BACKWARD = re.compile(r"batch_norm::.*gradients|batch_norm::.*::bwd")
FAULT = re.compile(r"exc_page_fault|clear_page|do_anonymous_page|handle_mm_fault|munmap|tlb_")
KERNEL_PATTERNS = [(kind, re.compile(p)) for kind, p in KERNELS]
CONTEXT_PATTERNS = [(kind, re.compile(p)) for kind, p in CONTEXTS]


def classify(stack):
    for frame in stack:
        kind = next((k for k, p in KERNEL_PATTERNS if p.search(frame)), None)
        if kind == "batch norm":
            backward = any(BN_BACKWARD.search(f) for f in stack)
            return "batch norm bwd" if backward else "batch norm fwd"
        if kind:
            return kind
    for kind, pattern in CONTEXT_PATTERNS:
        if any(pattern.search(frame) for frame in stack):
            return kind
    return "other (rayon idle/spin, thread start)"


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            if frames:
                yield frames
            frames = []
        elif line.startswith((" ", "\t")):
            frames.append(line.strip())
        else:
            frames = [line]
    if frames:
        yield frames


def main():
    counts, faults, total = Counter(), Counter(), 0
    for sample in samples(sys.stdin):
        stack = sample[1:]
        total += 1
        kind = classify(stack)
        counts[kind] += 1
        if any(FAULT.search(f) for f in stack[:6]):
            faults[kind] += 1
    print(f"samples {total}")
    for kind, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {kind}  (page faults {100 * faults[kind] / total:.1f}%)")
    print(f"{100 * sum(faults.values()) / total:5.1f}%  of all samples in page-fault paths")


main()
