"""`run.py` with its N-th checkpoint write stopped half way, for the SIGKILL tests.

    python tests/_pause_checkpoint_write.py N MARKER run.py-args...

TensorFlow writes a checkpoint in two steps: the variables go to a temporary shard
(`ckpt-<step>_temp/part-*`), then `MergeV2Checkpoints` moves it to `ckpt-<step>.index`
and `.data-*`; only after that does `CheckpointManager` record it in `checkpoint`.
Here the N-th merge does not run: the shard is on disk, MARKER is created, and the
process waits to be killed. Nothing else changes (the wrapper runs the real run.py).
"""

import pathlib
import runpy
import sys
import time

from tensorflow.python.ops import gen_io_ops

ROOT = pathlib.Path(__file__).resolve().parents[1]
pause_at, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])
merge = gen_io_ops.merge_v2_checkpoints
calls = 0


def merge_or_pause(*args, **kwargs):
    global calls
    calls += 1
    if calls == pause_at:
        marker.write_text("paused")
        while True:  # the test kills this process
            time.sleep(1)
    return merge(*args, **kwargs)


gen_io_ops.merge_v2_checkpoints = merge_or_pause
sys.argv = [str(ROOT / "run.py"), *sys.argv[3:]]
sys.path.insert(0, str(ROOT))
runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
