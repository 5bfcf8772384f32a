#!/usr/bin/env bash
# Issue 35, part 1: the same tuning budget for both memory policies on one env, CartPoleNoVel-v1 unless ENV names
# another (rl-zoo's -optimize: TPE, median pruner, the same trials, steps per trial, evaluations and seed; samplers:
# ppo_tx and ppo_lstm_fair, which draw PPO's settings from one space; RecurrentPPO with LSTM_POLICY, default
# ForgetGateMlpLstmPolicy). Resumable: the optuna database keeps
# finished trials and a rerun adds trials until --max-total-trials (a trial killed mid-way is marked failed and its
# budget spent again).
#   bash bench/memory_v2_tune.sh [OUT]      (default results/memory_v2/tuning; run at low priority: nice -n 19)
#   STEPS=20000 bash bench/memory_v2_tune.sh results/memory_v2/tuning_20k   (another budget, in its own folder)
#   ENV=sb3ma/popgym-RepeatPreviousEasy-v0 LSTM_POLICY=ForgetGateMultiInputLstmPolicy \
#     bash bench/memory_v2_tune.sh results/memory_v2/tuning_repeat_previous   (another env: its own folder; the
#     study names are the algo and the env id's name without its version, e.g. ppo_tx-popgym-RepeatPreviousEasy)
#   LSTM_TRIALS=14 bash bench/memory_v2_tune.sh   (RecurrentPPO's search alone to 14 counted trials: a resumed search
#   restarts the sampler from its seed, so its start-up trials can repeat earlier settings; see tuning.md's count of
#   distinct settings)
set -euo pipefail
OUT=${1:-results/memory_v2/tuning}
TRIALS=${TRIALS:-12}
TX_TRIALS=${TX_TRIALS:-$TRIALS}
LSTM_TRIALS=${LSTM_TRIALS:-$TRIALS}
STEPS=${STEPS:-50000}
ENV=${ENV:-CartPoleNoVel-v1}
LSTM_POLICY=${LSTM_POLICY:-ForgetGateMlpLstmPolicy}  # POPGym's dict tokens: ForgetGateMultiInputLstmPolicy
NAME=${ENV##*/}
NAME=${NAME%-v[0-9]*}
mkdir -p "$OUT"
common=(--env "$ENV" --gym-packages envs -optimize -n "$STEPS"
        --n-evaluations 2 --eval-episodes 10 --sampler tpe --pruner median --n-startup-trials 4 --seed 0
        --no-optim-plots --storage "sqlite:///$OUT/optuna.db" -f "$OUT/logs")
# both studies made first, one after the other (two processes creating one sqlite schema at once collide); a trial
# still marked RUNNING was killed with the last sitting (this script is the folder's one writer): marked FAIL, so that
# it does not count towards --max-total-trials (rl-zoo counts running trials) and its budget is spent again
python -c "import optuna, sys
from optuna.trial import TrialState
for name in sys.argv[2:]:
    study = optuna.create_study(storage=sys.argv[1], study_name=name, direction='maximize', load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        print(f'{name}: trial {trial.number} was killed mid-way: marked FAILED, run again')
" "sqlite:///$OUT/optuna.db" "ppo_tx-$NAME" "ppo_lstm_fair-$NAME"
python -m sb3_masked_attention.cli zoo train --algo ppo_tx --conf-file zoo_configs/ppo_tx.yml \
  --study-name "ppo_tx-$NAME" --max-total-trials "$TX_TRIALS" "${common[@]}" &
python -m sb3_masked_attention.cli zoo train --algo ppo_lstm_fair --conf-file zoo_configs/ppo_lstm.yml \
  -params policy:"'$LSTM_POLICY'" --study-name "ppo_lstm_fair-$NAME" --max-total-trials "$LSTM_TRIALS" \
  "${common[@]}" &
wait
