"""SampleSettings, the one rule for sampling overrides: a config section and a call's overrides give one
checked, hashable setting; bad values are one sentence (a UserError)."""
import pytest

from jaxgen.errors import UserError
from jaxgen.models.diffusion import flow, schedules
from jaxgen.models.diffusion.sampling import SampleSettings, SamplingError

SECTION = {"method": "ddim", "steps": 10, "eta": 0.0, "guidance": 2.0, "thresholding": "dynamic",
           "percentile": 0.995, "variance": "small", "prior_steps": 5, "noise_aug": 0.1}


def test_overrides_apply_and_none_keeps_the_configs():
    s = SampleSettings.from_config(SECTION, {"steps": 4, "guidance": None, "method": "ddpm"})
    assert (s.method, s.steps, s.guidance, s.thresholding) == ("ddpm", 4, 2.0, "dynamic")
    assert s == SampleSettings.from_config(SECTION, {"steps": 4, "method": "ddpm"})  # hashable, comparable
    assert {s.static: 1}[SampleSettings.from_config(SECTION, {"steps": 4, "method": "ddpm", "guidance": 7.0}).static]
    prior = SampleSettings.from_config(SECTION, {"prior_steps": 3}, steps="prior_steps", thresholding="prior_x")
    assert (prior.steps, prior.thresholding) == (3, "none")  # read from prior_steps; an absent key keeps the default


@pytest.mark.parametrize("overrides, message", [
    ({"stepz": 3}, "unknown sample setting 'stepz'; the settings are eta, guidance, method"),
    ({"steps": 0}, "sample.steps must be a positive integer, not 0."),
    ({"guidance": float("nan")}, "sample.guidance must be a finite number >= 0, not nan."),
    ({"eta": -1.0}, "sample.eta must be a finite number >= 0, not -1.0."),
    ({"thresholding": "soft"}, "sample.thresholding must be one of none, static, dynamic, not 'soft'."),
    ({"percentile": 1.5}, "sample.percentile must be a number in [0, 1], not 1.5."),
    ({"method": "plms"}, "sample.method must be one of ddpm, ddim, dpmpp_2m"),
])
def test_bad_values_are_one_sentence(overrides, message):
    with pytest.raises(SamplingError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        SampleSettings.from_config(SECTION, overrides)
    assert issubclass(SamplingError, UserError)


def test_check_against_the_schedule():
    with pytest.raises(SamplingError, match=r"^sample.prior_steps must be in 1\.\.10 \(the model's timesteps\)"):
        SampleSettings.from_config(SECTION, {"prior_steps": 11}, steps="prior_steps").check(schedules.cosine(10))
    with pytest.raises(SamplingError, match="^a flow model samples with one of euler, heun, not 'ddim'"):
        SampleSettings.from_config(SECTION).check(flow.FlowSchedule())
    SampleSettings(method="heun", steps=500).check(flow.FlowSchedule())  # flow time is continuous
