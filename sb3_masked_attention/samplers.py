"""rl-zoo ``-optimize`` samplers for the package's transformers.

rl-zoo picks a hyperparameter sampler by ``--algo``. :func:`~sb3_masked_attention.zoo.register_algorithms` adds:

- ``ppo_tx`` (TransformerPPO): PPO's settings plus the memory (``memory_len``, ``d_model``, ``n_layers``,
  ``head_mask_strategy``, GTrXL's ``gated`` residuals and ``ortho_init``: which initialisation learns differed by task,
  so the search decides it rather than the policy's default);
- ``ppo_window``: stock PPO under a second name, so that ``-optimize`` can sample the window transformer's
  ``d_model``, ``n_layers`` and ``head_mask_strategy`` (rl-zoo's ``ppo`` sampler only knows MLP sizes). Use it with
  an entry whose policy is ``HeadMaskedTransformerPolicy`` (e.g. ``zoo_configs/ppo.yml``).
- ``ppo_lstm_fair``: sb3-contrib's RecurrentPPO under a second name whose sampler draws the PPO settings from the very
  space ``ppo_tx`` draws them from (rl-zoo's ``ppo_lstm`` sampler reaches minibatches of 4 and 4096-step rollouts,
  whose trials can take hours on a CPU, and samples MLP sizes instead of the LSTM's), plus the LSTM's width: tuning
  both with the same trials, steps per trial and objective then searches the same settings. The entry's ``policy``
  stays (e.g. ``ForgetGateMlpLstmPolicy``).

As with every rl-zoo sampler, the sampled ``policy_kwargs`` replace the entry's; the window length stays where the
entry sets it (``env_wrapper``). The learning rate is sampled low (1e-5 to 1e-3): transformer PPO diverged at 1e-3
on Dark Room.
"""

from __future__ import annotations

from typing import Any

#: Categorical choices, shared by the samplers and the converters.
LSTM_SIZES = (32, 64, 128, 256)
D_MODELS = (32, 64, 128)
N_LAYERS = (1, 2, 3)
STRATEGIES = ("none", "specialized", "diversified", "monotonic")
MEMORY_LENS = (16, 64, 256, 1024)
#: TransformerMemoryPolicy's switches that ``ppo_tx`` draws (searches before they were drawn ran the defaults then).
TX_SWITCHES = ("gated", "ortho_init")


def _ppo_params(trial: Any) -> dict[str, Any]:
    """The PPO settings every transformer sampler draws (values as rl-zoo's converters leave them)."""
    return {
        "n_steps": 2 ** trial.suggest_int("n_steps_pow", 5, 10),
        "batch_size": 2 ** trial.suggest_int("batch_size_pow", 6, 9),
        "gamma": 1 - trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "gae_lambda": 1 - trial.suggest_float("one_minus_gae_lambda", 0.001, 0.2, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        "n_epochs": trial.suggest_categorical("n_epochs", [4, 10, 20]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
    }


def _transformer_kwargs(trial: Any) -> dict[str, Any]:
    return {
        "d_model": trial.suggest_categorical("d_model", list(D_MODELS)),
        "n_layers": trial.suggest_categorical("n_layers", list(N_LAYERS)),
        "head_mask_strategy": trial.suggest_categorical("head_mask_strategy", list(STRATEGIES)),
    }


def sample_ppo_tx_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """TransformerPPO: PPO's settings and the memory policy's ``memory_len``, width, depth, head masks, gated residuals
    and initialisation."""
    policy_kwargs = {"memory_len": trial.suggest_categorical("memory_len", list(MEMORY_LENS)), **_transformer_kwargs(trial)}
    params = _ppo_params(trial)
    policy_kwargs.update({name: trial.suggest_categorical(name, [False, True]) for name in TX_SWITCHES})
    return {**params, "policy_kwargs": policy_kwargs}


def sample_ppo_lstm_fair_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """RecurrentPPO: the PPO settings of :func:`sample_ppo_tx_params` (the same space) and the LSTM's width; actor and
    critic keep LSTMs of their own, as in rl-zoo's tuned ``ppo_lstm`` entries."""
    size = trial.suggest_categorical("lstm_hidden_size", list(LSTM_SIZES))
    return {**_ppo_params(trial), "policy_kwargs": {"lstm_hidden_size": size, "enable_critic_lstm": True}}


def sample_ppo_window_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """PPO + ``HeadMaskedTransformerPolicy``: PPO's settings and the window transformer's width, depth and head masks."""
    kwargs = _transformer_kwargs(trial)
    strategy = kwargs.pop("head_mask_strategy")
    return {**_ppo_params(trial), "policy_kwargs": {"head_mask_strategy": strategy, "features_extractor_kwargs": kwargs}}


class _Fixed:
    """A stand-in optuna trial that answers with recorded values (rl-zoo's converters take a finished trial's
    ``params``: the sampler is replayed on them, so the two cannot disagree)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.params[name]

    suggest_float = suggest_categorical = suggest_int


def convert_ppo_tx_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """A finished ``ppo_tx`` trial's raw params -> hyperparameters (rl-zoo ``--trial-id`` / ``load_trial``).

    A trial from a search made before the sampler drew :data:`TX_SWITCHES` leaves them out, so the policy's current
    defaults apply: they may differ from the defaults it ran with (results/memory_v2/README.md names them)."""
    older = [name for name in TX_SWITCHES if name not in sampled_params]
    params = sample_ppo_tx_params(_Fixed({**sampled_params, **dict.fromkeys(older)}), 0, 0, {})
    for name in older:
        del params["policy_kwargs"][name]
    return params


def convert_ppo_window_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """A finished ``ppo_window`` trial's raw params -> hyperparameters."""
    return sample_ppo_window_params(_Fixed(sampled_params), 0, 0, {})


def convert_ppo_lstm_fair_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """A finished ``ppo_lstm_fair`` trial's raw params -> hyperparameters."""
    return sample_ppo_lstm_fair_params(_Fixed(sampled_params), 0, 0, {})


#: algo -> (sampler, converter), registered in rl-zoo by :func:`~sb3_masked_attention.zoo.register_algorithms`.
SAMPLERS = {
    "ppo_tx": (sample_ppo_tx_params, convert_ppo_tx_params),
    "ppo_window": (sample_ppo_window_params, convert_ppo_window_params),
    "ppo_lstm_fair": (sample_ppo_lstm_fair_params, convert_ppo_lstm_fair_params),
}
