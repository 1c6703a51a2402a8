"""Run a DAG in-process with ``dag.test()`` and read back what its tasks did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.models.dagrun import DagRun


@dataclass
class Result:
    run: DagRun
    states: dict[str, str]

    @property
    def state(self) -> str:
        return str(self.run.state)

    def xcom(self, task_id: str) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(
                    dag_id=self.run.dag_id,
                    run_id=self.run.run_id,
                    task_id=task_id,
                    key="return_value",
                )
                .one_or_none()
            )
            return None if row is None else XComModel.deserialize_value(row)


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Result:
    dag = load_dag(dag_id)
    run = dag.test(run_conf=conf or {})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return Result(run=run, states=states)
