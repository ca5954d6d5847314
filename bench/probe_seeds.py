"""Runs the scikit-learn peer's probes (../shared/peers/probe_sklearn.py, unchanged) with
more label-subset seeds than its fixed three, for `bench/run.sh probes-agreement`.

    python probe_seeds.py PEERS_DIR SEEDS FRACTIONS -- [probe_sklearn arguments]

SEEDS is a count (seeds 0..SEEDS-1), FRACTIONS a comma list (e.g. 0.01,0.1). With three
seeds a 1% probe's mean moves by about a point from one draw of subsets to another, so
two implementations that draw subsets with different random generators can only be
compared on many seeds. Prints the peer's JSON result line.
"""

import sys


def main():
    peers, seeds, fractions = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rest = sys.argv[sys.argv.index("--") + 1:]
    sys.path.insert(0, peers)
    import probe_sklearn

    probe_sklearn.SUBSET_SEEDS = tuple(range(seeds))
    probe_sklearn.LABEL_FRACTIONS = tuple(float(f) for f in fractions.split(","))
    sys.argv = ["probe_sklearn.py", *rest]
    probe_sklearn.main()


if __name__ == "__main__":
    main()
