"""Benchmark children that time a real bundle run and a bare loop doing the same work on the bundle's data."""

from __future__ import annotations

import os
import shutil
import sys
import time

import torch

from .measuring import BUNDLES, peak_rss_mib, synchronize


def _bundle_workflow(bundle: str, configs: list[str], overrides: dict):
    from monai.bundle import ConfigWorkflow

    root = BUNDLES / bundle
    os.chdir(root)
    sys.path.insert(0, str(root))
    workflow = ConfigWorkflow(config_file=[f"configs/{c}" for c in configs], workflow_type="train", **overrides)
    workflow.initialize()
    return workflow


def _timed(engine, first_epoch: int, device: torch.device) -> dict:
    """Per epoch >= ``first_epoch``: loop seconds (first batch wait to last iteration), seconds to the end of the
    first iteration (the epoch's start-up: worker processes, first batch) and data-wait seconds.

    On a GPU the last iteration of an epoch waits for the device, so the loop time holds all its work.
    """
    from ignite.engine import Events

    record = {"loop": [], "first": [], "wait": [], "iterations": []}
    marks: dict = {}

    def started(e):
        marks.update(start=time.perf_counter(), wait=0.0)

    def get_started(e):
        marks["get"] = time.perf_counter()

    def get_done(e):
        marks["wait"] += time.perf_counter() - marks["get"]

    def epoch_done(e):
        if e.state.epoch >= first_epoch:
            record["loop"].append(marks["end"] - marks["start"])
            record["first"].append(marks["first"] - marks["start"])
            record["wait"].append(marks["wait"])
            record["iterations"].append(e.state.epoch_length)

    def iteration_done(e):
        if e.state.iteration % e.state.epoch_length == 0:
            synchronize(device)
        marks["end"] = time.perf_counter()
        if e.state.iteration % e.state.epoch_length == 1 or e.state.epoch_length == 1:
            marks["first"] = marks["end"]

    engine.add_event_handler(Events.EPOCH_STARTED, started)
    engine.add_event_handler(Events.GET_BATCH_STARTED, get_started)
    engine.add_event_handler(Events.GET_BATCH_COMPLETED, get_done)
    engine.add_event_handler(Events.ITERATION_COMPLETED, iteration_done)
    engine.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
    return record


def bundle_run(bundle: str, overrides: dict) -> dict:
    """A real ``train.json`` run: per-iteration seconds of training and of validation after the first epoch."""
    workflow = _bundle_workflow(bundle, ["train.json"], overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    device = torch.device(workflow.parser.get_parsed_content("device"))
    train = _timed(trainer, first_epoch=2, device=device)
    validate = _timed(evaluator, first_epoch=2, device=device)
    workflow.run()
    # the timings are all a benchmark run keeps: its checkpoints (~0.5 GB each) would fill the disk
    shutil.rmtree(workflow.parser.get_parsed_content("run_dir"), ignore_errors=True)
    return {
        "train": train,
        "validate": validate,
        "peak_rss_mib": peak_rss_mib(),
        "torch_threads": torch.get_num_threads(),
    }


def bare_run(bundle: str, overrides: dict, epochs: int, in_memory: bool = False) -> dict:
    """The same work by hand: the bundle's network, loss, optimiser, autocast, accumulation and clipping, without
    Ignite or handlers. The batches come from the bundle's own data loaders (same cache, augmentation and
    workers), or, with ``in_memory``, are drawn once and replayed, which leaves out the data pipeline."""
    workflow = _bundle_workflow(bundle, ["train.json"], overrides)
    parser = workflow.parser
    network, loss_fn, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    inferer = parser.get_parsed_content("train#inferer")
    accumulation, clip = parser.get_parsed_content("accumulation_steps"), parser.get_parsed_content("grad_clip")
    device = torch.device(parser.get_parsed_content("device"))
    train_loader = parser.get_parsed_content("train#dataloader")
    val_loader = parser.get_parsed_content("validate#dataloader")
    if in_memory:
        train_loader, val_loader = list(train_loader), list(val_loader)
    train_times, val_times, train_counts, val_counts, train_first, val_first = [], [], [], [], [], []
    for _ in range(epochs):
        network.train()
        start, count = time.perf_counter(), 0
        for i, batch in enumerate(train_loader):
            image, label = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
            loss = loss_fn(inferer(image, network), label) / accumulation
            loss.backward()
            if (i + 1) % accumulation == 0 or i + 1 == len(train_loader):
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
            count += 1
            if count == 1:
                train_first.append(time.perf_counter() - start)
        synchronize(device)
        train_times.append(time.perf_counter() - start)
        train_counts.append(count)
        network.eval()
        start, count = time.perf_counter(), 0
        with torch.no_grad():
            for batch in val_loader:
                torch.softmax(inferer(batch["image"].to(device, non_blocking=True), network).float(), dim=1)
                count += 1
                if count == 1:
                    val_first.append(time.perf_counter() - start)
        synchronize(device)
        val_times.append(time.perf_counter() - start)
        val_counts.append(count)
    return {
        "train": {"loop": train_times[1:], "first": train_first[1:], "iterations": train_counts[1:]},
        "validate": {"loop": val_times[1:], "first": val_first[1:], "iterations": val_counts[1:]},
        "peak_rss_mib": peak_rss_mib(),
    }
