"""DVC stage `train` (optional): export's train split -> a tuned model in models/<train.name>/ (adapter or merged
weights, a DVC output), its figures in training/metrics.json and its loss curve in training/loss.csv."""

from llm_feedback.hub_upload import upload_folder
from llm_feedback.params import load_params
from llm_feedback.stage import run_stage
from llm_feedback.train import train
from llm_feedback.training.record import write_loss_curve, write_metrics


def main() -> str:
    params = load_params()
    paths = params.paths
    trained = train(
        params=params.train,
        models=params.models,
        export=paths.export,
        models_folder=paths.models,
        checkpoints=paths.train_checkpoints,
    )
    write_metrics(trained.record, paths.train_metrics)
    write_loss_curve(trained.record, paths.train_loss)
    line = trained.line()
    if trained.record is not None and params.train.push_to_hub:
        pushed = upload_folder(
            trained.output,
            params.train.push_to_hub,
            repo_type="model",
            private=params.train.private,
            key="train.push_to_hub",
            message="Update the tuned model",
        )
        line += f"; pushed to {pushed}"
    return line


if __name__ == "__main__":
    run_stage("train", main)
