"""An example story pipeline in Prefect 3 that reports to Storyline.

Four stages (script, entities, storyboard, render) run as tasks; after each one the
flow reports PROCESSING with its progress and stage through the retrying
``report_status`` task, and at the end COMPLETED with the result URL. The flow state
hooks report the outcome once more, and a failure, a crash or a cancellation as
FAILED (which refunds the user). The stages only pretend to work.

How to install and run it: docs/prefect.md, "The example flow".
"""

from __future__ import annotations

import argparse
import time

from prefect import flow, task

from storyline_pipeline.prefect import ReportingHooks, backoff, report_status

STAGES = (("script", 15), ("entities", 40), ("storyboard", 65), ("render", 90))


class StageFailed(RuntimeError):
    """Raised by a stage named in ``fail_at``, to rehearse the failure path."""


def work(stage: str, seconds: float, fail_at: str | None) -> None:
    time.sleep(seconds)
    if stage == fail_at:
        raise StageFailed(f"The {stage} stage failed.")


@task(name="write-script")
def write_script(prompt: str, seconds: float, fail_at: str | None = None) -> list[str]:
    work("script", seconds, fail_at)
    scenes = [part.strip() for part in prompt.replace("!", ".").split(".") if part.strip()]
    return scenes or [prompt]


@task(name="extract-entities")
def extract_entities(scenes: list[str], seconds: float, fail_at: str | None = None) -> list[str]:
    work("entities", seconds, fail_at)
    return sorted({word for scene in scenes for word in scene.split() if word.istitle()})


@task(name="draw-storyboard")
def draw_storyboard(
    scenes: list[str], entities: list[str], seconds: float, fail_at: str | None = None
) -> list[str]:
    work("storyboard", seconds, fail_at)
    return [f"frame {n}: {scene}" for n, scene in enumerate(scenes, start=1)]


@task(name="render-video")
def render_video(
    project_id: str, frames: list[str], seconds: float, fail_at: str | None = None
) -> str:
    work("render", seconds, fail_at)
    return f"https://videos.storyline.invalid/{project_id}.mp4"


# The example takes Storyline's URL from its own ``storyline_url`` parameter, for trying it
# out; a production flow leaves url_param unset and configures STORYLINE_URL.
hooks = ReportingHooks(url_param="storyline_url")


@flow(name="story-video", **hooks.flow_options())
def story_video(
    project_id: str,
    prompt: str = "A cat sails to the Moon. The Moon is made of cheese.",
    step_seconds: float = 1.0,
    fail_at: str | None = None,
    storyline_url: str | None = None,
    report_delay: float = 1.0,
) -> str:
    """Make the video for a Storyline project; returns its URL.

    ``fail_at`` names a stage that raises; ``storyline_url`` overrides STORYLINE_URL
    (the hooks read it too); ``report_delay`` is the first retry delay of a report.
    """
    report = report_status.with_options(retry_delay_seconds=backoff(report_delay))

    def reached(stage: str, progress: int) -> None:
        report(project_id, "PROCESSING", progress=progress, stage=stage, url=storyline_url)

    scenes = write_script(prompt, step_seconds, fail_at)
    reached(*STAGES[0])
    entities = extract_entities(scenes, step_seconds, fail_at)
    reached(*STAGES[1])
    frames = draw_storyboard(scenes, entities, step_seconds, fail_at)
    reached(*STAGES[2])
    result_url = render_video(project_id, frames, step_seconds, fail_at)
    reached(*STAGES[3])
    report(
        project_id,
        "COMPLETED",
        progress=100,
        stage="done",
        result_url=result_url,
        url=storyline_url,
    )
    return result_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storyline_pipeline.example_flow",
        description="Run the example story pipeline for one Storyline project.",
    )
    parser.add_argument("project_id", help="the Storyline project id to report on")
    parser.add_argument("--prompt", default="A cat sails to the Moon.")
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--fail-at", choices=[stage for stage, _ in STAGES])
    parser.add_argument("--url", help="Storyline's GraphQL endpoint (default: $STORYLINE_URL)")
    args = parser.parse_args(argv)
    story_video(
        args.project_id,
        prompt=args.prompt,
        step_seconds=args.step_seconds,
        fail_at=args.fail_at,
        storyline_url=args.url,
    )


if __name__ == "__main__":
    main()
