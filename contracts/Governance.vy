# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Governance
@notice The owner of perpdex's MarginVault, PriceOracle and OrderRouter (SPEC 14,
        "Governance"): every owner call goes through snekmate's timelock controller,
        `schedule` -> wait at least `get_minimum_delay()` seconds -> `execute`, so a change
        that can hurt open positions or the pool (margin ratios, leverage, fees, caps, new
        markets, the liquidator, the router and its settlement config, feeders, the oracle's
        limits, ownership itself) is announced by a `CallScheduled` event a delay before it
        can apply: a trader sees it coming and can close first. Pausing new risk stays
        immediate: the GUARDIAN role calls `pause_vault`, `unpause_vault`, `pause_market`,
        `unpause_market`, which this contract forwards to the vault at once.
@dev Timelocked (PROPOSER schedules, EXECUTOR executes once ready, CANCELLER cancels a pending
     one; snekmate's `timelock_controller`, which also administers roles: granting or
     revoking any role, GUARDIAN included, and `update_delay`, are themselves operations
     on this contract that wait the delay, as no admin is set). Immediate: the guardian's
     four pause calls and `accept_ownership_of`.
     Unpausing is immediate too: a pause only stops new risk and changes no parameter, so
     lifting it restores exactly the configuration that already waited the delay; nothing
     an open position is measured by changes. A guardian that pauses on a false alarm can
     then end it within a block instead of freezing new trading for a day.
     Taking ownership: the vault, oracle and router use two-step ownership; their current
     owner calls `transfer_ownership(governance)` and anyone may then call
     `accept_ownership_of(target)`. Accepting only completes a transfer the owner itself
     started (the target checks that this contract is its pending owner), so it needs no
     role, and the deployment script hands every contract over in the same run instead of
     waiting the delay. Handing ownership on (to a new governance) is a timelocked
     `transfer_ownership` operation.
@custom:kill A guardian calls `pause_vault()` (every market) or `pause_market(m)`: no new
             risk can be opened in the vault, while closing, reducing, withdrawing free
             collateral, removing liquidity and liquidations keep working. Everything else
             (revoking feeders, `set_router(empty(address))`, `set_liquidator`) waits the
             delay; a scheduled operation is stopped by a canceller with `cancel(id)`.
"""

from snekmate.auth import access_control
from snekmate.governance import timelock_controller

initializes: access_control
initializes: timelock_controller[access_control := access_control]

exports: timelock_controller.__interface__


interface IPausableVault:
    def pause(): nonpayable
    def unpause(): nonpayable
    def pause_market(_market: uint256): nonpayable
    def unpause_market(_market: uint256): nonpayable


interface ITwoStepOwnable:
    def accept_ownership(): nonpayable


# May pause and unpause the vault at once; administered by the timelock (DEFAULT_ADMIN_ROLE).
GUARDIAN_ROLE: public(constant(bytes32)) = keccak256("GUARDIAN_ROLE")
MAX_GUARDIANS: constant(uint256) = 16

# The vault the guardian's pause calls go to.
VAULT: public(immutable(IPausableVault))


event VaultPaused:
    guardian: indexed(address)
    paused: bool


event MarketPaused:
    guardian: indexed(address)
    market: indexed(uint256)
    paused: bool


event OwnershipAccepted:
    target: indexed(address)
    caller: indexed(address)


@deploy
def __init__(
    _vault: IPausableVault,
    _minimum_delay: uint256,
    _proposers: DynArray[address, 255],
    _executors: DynArray[address, 255],
    _guardians: DynArray[address, MAX_GUARDIANS],
):
    """
    @param _vault The MarginVault the guardian pauses.
    @param _minimum_delay Seconds between scheduling and executing any owner call (1 day in
           perpdex/defaults.toml; 0 only for tests and demos).
    @param _proposers Accounts that schedule (and cancel) operations.
    @param _executors Accounts that execute ready operations.
    @param _guardians Accounts that pause and unpause the vault at once.
    """
    access_control.__init__()
    # no admin: roles and the delay change only through the timelock itself
    timelock_controller.__init__(_minimum_delay, _proposers, _executors, empty(address))
    for guardian: address in _guardians:
        access_control._grant_role(GUARDIAN_ROLE, guardian)
    VAULT = _vault


# ================================================================== guardian (immediate)


@external
def pause_vault():
    """
    @notice Stop new risk in every market of the vault, now. Guardian only.
    """
    access_control._check_role(GUARDIAN_ROLE, msg.sender)
    extcall VAULT.pause()
    log VaultPaused(guardian=msg.sender, paused=True)


@external
def unpause_vault():
    """
    @notice Lift the vault-wide pause, now (see the contract's @dev). Guardian only.
    """
    access_control._check_role(GUARDIAN_ROLE, msg.sender)
    extcall VAULT.unpause()
    log VaultPaused(guardian=msg.sender, paused=False)


@external
def pause_market(_market: uint256):
    """
    @notice Stop new risk in `_market`, now. Guardian only.
    """
    access_control._check_role(GUARDIAN_ROLE, msg.sender)
    extcall VAULT.pause_market(_market)
    log MarketPaused(guardian=msg.sender, market=_market, paused=True)


@external
def unpause_market(_market: uint256):
    """
    @notice Lift `_market`'s pause, now. Guardian only.
    """
    access_control._check_role(GUARDIAN_ROLE, msg.sender)
    extcall VAULT.unpause_market(_market)
    log MarketPaused(guardian=msg.sender, market=_market, paused=False)


# ================================================================== ownership


@external
def accept_ownership_of(_target: ITwoStepOwnable):
    """
    @notice Complete a two-step ownership transfer to this contract that `_target`'s owner
            started. Anyone may call: `_target` reverts unless this contract is its
            pending owner.
    """
    extcall _target.accept_ownership()
    log OwnershipAccepted(target=_target.address, caller=msg.sender)
