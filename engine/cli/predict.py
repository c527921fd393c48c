"""`predict`: the top-k of a checkpoint for image files and folders, and for the frames of video files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from engine.errors import BadInputError


def register(sub) -> None:
    help_ = "top-k predictions of a checkpoint for images or folders"
    p = sub.add_parser("predict", help=help_, description=help_)
    p.add_argument("checkpoint", help="a checkpoint (.pt), a run folder (uses its best.pt) or an export of "
                                      "`python main.py export` (.onnx, .pt2, .ts, .xml, .pte; a Core ML .mlpackage "
                                      "on macOS only)")
    p.add_argument("inputs", nargs="+", help="image files and/or folders, and/or video files (.mp4, .mov, .avi, .mkv, "
                                             ".webm …: every frame, or one per --every seconds)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--every", type=float, default=0.0, metavar="SECONDS",
                   help="for a video: classify one frame per SECONDS (default 0: every frame)")
    p.set_defaults(run=cmd_predict)


def cmd_predict(args) -> int:
    from engine.infer.exported import looks_like_export
    from engine.infer.inference import Predictor, expand_inputs
    from engine.train.runs import checkpoint_path

    for option, value in (("--topk", args.topk), ("--batch-size", args.batch_size)):
        if value < 1:
            raise BadInputError(f"{option} must be at least 1, got {value}")
    if not args.every >= 0:  # also refuses nan
        raise BadInputError(f"--every must be 0 or more seconds, got {args.every}")
    checkpoint = Path(args.checkpoint)
    if checkpoint.is_dir() and not looks_like_export(checkpoint):  # a run folder (a Core ML package is a folder)
        checkpoint = checkpoint_path(checkpoint, "best")
    from engine.data.video import is_video

    videos = [Path(raw) for raw in args.inputs if is_video(raw) and not Path(raw).is_dir()]
    paths = expand_inputs([raw for raw in args.inputs if Path(raw) not in videos])
    if not paths and not videos:
        raise BadInputError(f"no image or video files found in {', '.join(args.inputs)}")
    if args.every and not videos:
        raise BadInputError("--every applies to video files, and none was given")
    if looks_like_export(checkpoint):
        predictor = Predictor.from_export(checkpoint, args.device)
    else:
        predictor = Predictor.from_checkpoint(checkpoint, args.device)
        if predictor.owner:
            print(f"note: {checkpoint} is outside any run folder; it is the checkpoint of run {predictor.owner}",
                  file=sys.stderr)
        if predictor.ood is None and not args.json:
            print(f"note: no out-of-distribution check for {checkpoint.name} (calibrate it with: python main.py "
                  f"evaluate RUN_DIR)", file=sys.stderr)
    failures = 0
    for video in videos:
        failures += not _predict_video(predictor, video, args)
    for result in predictor.predict(paths, args.topk, args.batch_size):
        failures += not result.ok
        if args.json:
            print(json.dumps(result.to_dict()))
        elif result.ok:
            top = ", ".join(f"{name} {100 * p:.1f}%" for name, p in result.top)
            warning = (f"  [unlike the training data: OOD score {result.ood_score:.2f} > 1, do not trust this "
                       f"prediction]" if result.unfamiliar else "")
            print(f"{result.path}: {top}{warning}")
        else:
            print(f"{result.path}: cannot be used: {result.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if failures == len(paths) + len(videos) else EXIT_OK


def _predict_video(predictor, video: Path, args) -> bool:
    """Print one line (or JSON object) per classified frame; False when the video could not be read at all. A
    video damaged half-way keeps the frames printed before the damage and says where it stopped."""
    from engine.data.video import VideoError
    from engine.infer.live import classify_video

    frames = 0
    try:
        for result in classify_video(predictor, video, args.every, args.topk):
            frames += 1
            if args.json:
                print(json.dumps({"path": str(video), **result.to_dict()}))
                continue
            top = ", ".join(f"{name} {100 * p:.1f}%" for name, p in result.top)
            warning = (f"  [unlike the training data: OOD score {result.ood_score:.2f} > 1]" if result.unfamiliar
                       else "")
            print(f"{video} @ {result.time:.2f} s: {top}{warning}")
    except VideoError as exc:
        if not video.is_file() or "PyAV" in str(exc):
            raise  # a missing file or a missing decoder: one line, exit 2, whatever the other inputs
        print(f"{video}: cannot be used: {exc}", file=sys.stderr)
        return frames > 0
    if frames == 0:
        print(f"{video}: cannot be used: no frame could be decoded", file=sys.stderr)
    return frames > 0
