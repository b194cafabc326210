"""The report of a real search, opened in headless Chromium: no errors logged, every figure drawn, the top-k slider works.

Chromium is Debian's package (``.ci/run`` installs it), driven over the DevTools protocol on
a pipe (``--remote-debugging-pipe``: commands on fd 3, answers on fd 4, NUL-terminated
JSON), so no port is opened and no Python dependency is needed.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

import gridsearch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH = 1400
_FIGURES_JS = """(() => {
  const found = [], seen = new Set();
  const walk = (view) => {
    if (!view || seen.has(view)) return;
    seen.add(view);
    if (view.model.type === "Figure") {
      const box = view.el.getBoundingClientRect(), frame = view.frame.bbox;
      found.push({title: view.model.title?.text ?? "", x: box.left + frame.x, y: box.top + frame.y, w: frame.width, h: frame.height});
    }
    for (const child of view.child_views ?? []) walk(child);
  };
  for (const root of Bokeh.index.roots) walk(root);
  return found;
})()"""


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe; one page."""

    def __init__(self) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        read_end, self._commands = os.pipe()
        self._answers, write_end = os.pipe()
        child_in = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(read_end)
        os.close(write_end)

        def wire() -> None:  # --remote-debugging-pipe reads commands on fd 3 and answers on fd 4
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}",
             f"--window-size={WIDTH},900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=wire, close_fds=False)  # noqa: PLW1509
        os.close(child_in)
        os.close(child_out)
        self._id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)
        self.profile.cleanup()

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False, timeout: float = 60) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}, **({"sessionId": self.session} if session else {})}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path, timeout: float = 90) -> None:
        """Load ``path`` and wait until every Bokeh document is idle (rendered)."""
        self.send("Page.navigate", {"url": path.as_uri()}, session=True)
        deadline = time.monotonic() + timeout
        ready = "typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && Bokeh.documents.every((d) => d.is_idle)"
        while not self.evaluate(ready):
            assert time.monotonic() < deadline, f"the report did not render in {timeout} s"
            time.sleep(0.25)

    def screenshot(self) -> bytes:
        """The whole page as PNG, the viewport stretched to its height."""
        height = self.evaluate("document.documentElement.scrollHeight")
        self.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)
        time.sleep(1.0)  # Bokeh re-lays out on resize
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=True)["data"])

    def errors(self) -> list[str]:
        """What the page logged as errors or warnings, and uncaught exceptions."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(params["entry"]["text"])
        return found

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory, cluster_address: str) -> tuple[Path, Any]:
    """A real search (Ridge and trees, a forest family sharing one fit) and its report with explain."""
    import yaml

    directory = tmp_path_factory.mktemp("browser")
    config = directory / "search.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1},
        "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
        "search": {"params": [{"features__geohash__encode__precision": [4, 5], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0]},
                              {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [2, 4],
                               "model__max_depth": [3, 6], "model__random_state": [0]}]},
        "cv": {"folds": 3, "shuffle": True, "seed": 0}, "scoring": ["neg_root_mean_squared_error", "r2"],
        "cluster": {"address": cluster_address}, "log": str(directory / "runs"), "cache": {"dir": str(directory / "cache")}}))
    result = gridsearch.run(str(config), progress=False, top=0)
    report = gridsearch.report(result.log_path, directory / "report.html")
    return directory / "report.html", report, result


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
def test_the_report_of_a_real_search_renders_every_figure_without_errors_in_chromium(real_report):
    from PIL import Image

    page, report, _ = real_report
    expected = report.figures()
    with Chromium() as browser:
        browser.open(page)
        shot = Image.open(io.BytesIO(browser.screenshot())).convert("RGB")
        figures = browser.evaluate(_FIGURES_JS)
        errors = browser.errors()
    assert errors == []
    assert sorted(f["title"] for f in figures) == sorted(fig.title.text for fig in expected.values())
    pixels = np.asarray(shot).astype(int)
    for figure in figures:
        area = pixels[int(figure["y"]) + 2:int(figure["y"] + figure["h"]) - 2, int(figure["x"]) + 2:int(figure["x"] + figure["w"]) - 2]
        coloured = (area.max(axis=2) - area.min(axis=2)) > 60  # glyphs are coloured; background, grid and text are grey
        # 0.3 % of the plot area: more than a legend's swatch alone (0.03 %); the sparsest figure here colours about 1 %
        assert area.size and coloured.mean() >= 0.003, f"{figure['title']!r} drew nothing: {coloured.sum()} coloured pixels"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
def test_the_top_k_slider_fades_every_candidate_below_k_in_the_browser(real_report):
    page, _, _ = real_report
    with Chromium() as browser:
        browser.open(page)
        bright = ("(async () => { const doc = Bokeh.documents[0]; const slider = [...doc.all_models].find((m) => m.type === 'Slider');"
                  " slider.value = K; await new Promise((done) => setTimeout(done, 500));"  # CustomJS callbacks run asynchronously
                  " return [...doc.all_models].filter((m) => m.type === 'ColumnDataSource' && 'rank' in m.data)"
                  ".map((s) => Array.from(s.data.rank).filter((r, i) => s.data.alpha[i] > 0.5).sort((a, b) => a - b)); })()")
        at_one, at_three = browser.evaluate(bright.replace("K", "1")), browser.evaluate(bright.replace("K", "3"))
        assert browser.errors() == []
    assert at_one and all(ranks == [1] for ranks in at_one)  # ties share a rank; this search has none at the top
    assert all(ranks and max(ranks) <= 3 and 1 in ranks for ranks in at_three)


def test_a_real_search_records_model_sizes_and_its_report_explains_the_best_pipeline(real_report):
    _, report, result = real_report
    records = gridsearch.read_log(result.log_path)
    assert (records["model_size"] > 0).all()
    sizes = records.assign(forest=records["params"].str.contains("RandomForest")).groupby("forest")["model_size"].min()
    assert sizes[True] > sizes[False]  # trees outweigh a Ridge's coefficients
    shared = records[records["shared_fit"].notna()]
    assert len(shared) and (shared["fit_time"] == 0).all()
    names = report.figures()
    assert {f"{result.log_path.name}/{n}" for n in ("fit_time", "model_size", "parallel", "importance", "timeline")} <= set(names)
    explanation = report.explanations[result.log_path.name]
    assert explanation.table.set_index("path").loc["features__geohash__onehot", "status"] == "ok"
    assert "OneHotEncoder" in report.html
