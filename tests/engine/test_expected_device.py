"""Where a run would train, said before it starts as a typed value: views decide on the device's type, never on the
words shown for it (issue 28: the Training tab tested `text.startswith('CUDA')`)."""

from __future__ import annotations

import torch

from engine.train.devices import ExpectedDevice, expected_device, pick_device


def test_the_cpu_asked_for_is_the_cpu_without_a_warning():
    assert expected_device("cpu") == ExpectedDevice(type="cpu", text="CPU", warning="")


def test_a_device_that_is_not_there_has_no_type_and_says_why():
    device = expected_device("cuda:99")
    assert device.type == "" and device.text == "cuda:99" and "cuda:99" in device.warning


def test_auto_is_typed_as_the_device_a_run_picks():
    picked, warning = pick_device("auto")
    device = expected_device("auto")
    assert device.type == picked.type and device.warning == warning
    if picked.type == "cuda":
        assert torch.cuda.get_device_name(picked) in device.text
