"""Seeing what a search found: the report (trade-off figures in one HTML file) and ``explain`` (each pipeline step's output).

``tables`` and ``importance`` are pandas and numpy only; ``figures``, ``activity`` and
``report`` import Bokeh when called; ``explain`` works on any scikit-learn estimator.
"""
