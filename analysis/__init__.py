"""Statistics of training success over seeds, read from MLflow.

Modules (pure functions over a trials frame, one row per run, and arrays; notebooks only call and plot):
    load        MLflow -> trials frame (load_trials), long-form metric curves (load_curves), adaptive looks
    outcomes    run outcomes, success rules, re-judging success from the logged curves
    rates       Wilson / Clopper-Pearson intervals, Newcombe + Fisher comparisons, Holm, logistic regression
    planning    seeds for P(at least one success), for an interval width, per arm for 80% power (exact)
    survival    Kaplan-Meier time to success with censoring, log-rank, expected compute per success
    continuous  interquartile mean, stratified bootstrap, probability of improvement
    attribution which seed decides success: init vs data vs their pair, in a crossed design (two-way bootstrap)
    failure     error against test length; the probe tables the trainer recorded (re-run on saved models if absent)
    figures     titled, labelled figures with interval bars and run counts
    overview    the report's first page: rate table per cell for reading, per-seed curves, what more seeds buy
    notebook    the setup every notebook opens with: load the trials, save them, show the outcome counts
    report      `make report EXPERIMENT=name`: the notebooks headless -> reports/<experiment>/
"""
