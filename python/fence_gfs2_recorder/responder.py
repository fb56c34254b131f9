"""``fence-gfs2-responder``: a stand-in for the NNF reconciler.

THIS IS A TEST DOUBLE, NOT A FENCING MECHANISM, in every mode but
``detach``: it detaches no storage and fences nothing, it only answers fence
requests the way the NNF reconciler does, so that the agent can be
demonstrated and tested without Kubernetes. Mode ``detach`` is for a lab
whose storage is the Linux NVMe target (nvmet): it disables the node's
namespaces before answering success, and enables them again when the answer
is removed (``on``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

DESCRIPTION = (
    "Test double for the NNF reconciler: answers fence_gfs2_recorder requests. "
    "It is NOT a fencing mechanism and detaches no storage (except in mode detach, "
    "for a lab on the Linux NVMe target); use it only for demos, tests and labs."
)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fence-gfs2-responder", description=DESCRIPTION)
    p.add_argument("--request-dir", required=True, help="directory the agent writes requests to")
    p.add_argument("--response-dir", required=True, help="directory to write the answers to")
    p.add_argument(
        "--mode",
        choices=["success", "inplace", "failure", "silent", "detach"],
        default="success",
        help="success: storage found and detached, pretty JSON renamed into place; "
        "inplace: nothing found, compact JSON with "
        '"status": "success" written in place in two parts; failure: storage found, '
        '"success": false; silent: never answer; detach: disable the node\'s namespaces '
        "in nvmet (--nvmet-subsystem), then answer as success, and enable them again "
        "when the answer is removed (default: %(default)s)",
    )
    p.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before reading a request"
    )
    p.add_argument(
        "--answer-delay",
        type=float,
        default=0.0,
        help="seconds between reading a request and answering it; the answer is written "
        "even if the request was withdrawn meanwhile, as nnf-sos does",
    )
    p.add_argument(
        "--serial",
        type=float,
        default=None,
        metavar="SECONDS",
        help="answer one request at a time, as nnf-sos's reconciler does, each taking "
        "SECONDS from its read to its answer (replaces --answer-delay)",
    )
    p.add_argument(
        "--nothing-found",
        action="append",
        default=[],
        metavar="TARGET",
        help='answer this target "No block storage resources found to fence" in place, '
        "whatever the mode (repeatable; * for every target)",
    )
    p.add_argument(
        "--pause", type=float, default=0.2, help="inplace: seconds between the two halves"
    )
    p.add_argument("--poll-interval", type=float, default=0.5, help="seconds between rescans")
    p.add_argument("--force-poll", action="store_true", help="poll only, no inotify")
    p.add_argument("--count", type=int, default=None, help="exit after this many answers")
    p.add_argument("--quiet", action="store_true", help="do not print a line per answer")
    p.add_argument(
        "--nvmet-subsystem",
        default=None,
        metavar="NQN",
        help="detach: the subsystem NQN of a node, {target} standing for its name",
    )
    p.add_argument(
        "--nvmet-root",
        default=None,
        metavar="DIR",
        help="detach: the nvmet configfs directory (default /sys/kernel/config/nvmet)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from . import _native

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    print(
        (
            "fence-gfs2-responder (lab: detaches in nvmet)"
            if args.mode == "detach"
            else "fence-gfs2-responder (test double, fences nothing)"
        )
        + f": mode={args.mode} "
        + (f"serial={args.serial:g}s " if args.serial is not None else "")
        + f"requests={args.request_dir} responses={args.response_dir}",
        flush=True,
    )
    try:
        _native.run_responder(
            args.request_dir,
            args.response_dir,
            mode=args.mode,
            delay=args.delay,
            answer_delay=args.answer_delay,
            nothing_found=args.nothing_found,
            pause=args.pause,
            poll_interval=args.poll_interval,
            force_poll=args.force_poll,
            max_answers=args.count,
            verbose=not args.quiet,
            serial_cost=args.serial,
            nvmet_subsystem=args.nvmet_subsystem,
            nvmet_root=args.nvmet_root,
        )
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as e:
        sys.stderr.write(f"fence-gfs2-responder: {e}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
