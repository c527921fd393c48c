"""The studio's one job lifecycle: a JobRunner per kind of job a panel runs (runner.py), the board that queues the
jobs competing for the device and ends them all on close (board.py), and how a job and the queue are shown
(progress_view.py, queue_view.py)."""
