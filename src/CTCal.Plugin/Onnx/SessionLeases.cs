namespace CTCal.Plugin.Onnx;

/// <summary>
/// Reference counts of sessions in use, so that unloading a model while a generation runs on it defers disposal until
/// that generation ends instead of pulling the sessions from under it.
/// </summary>
internal sealed class SessionLeases
{
    private readonly object _gate = new();
    private readonly Dictionary<ModelSessions, int> _inUse = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<ModelSessions> _retired = new(ReferenceEqualityComparer.Instance);

    /// <summary>Marks <paramref name="sessions"/> in use until the returned lease is disposed.</summary>
    public IDisposable Acquire(ModelSessions sessions)
    {
        lock (_gate)
        {
            _inUse[sessions] = _inUse.GetValueOrDefault(sessions) + 1;
        }

        return new Lease(this, sessions);
    }

    /// <summary>Disposes <paramref name="sessions"/> now if unused, otherwise when its last lease ends.</summary>
    public void Retire(ModelSessions sessions)
    {
        lock (_gate)
        {
            if (_inUse.ContainsKey(sessions))
            {
                _retired.Add(sessions);
                return;
            }
        }

        sessions.Dispose();
    }

    private void Release(ModelSessions sessions)
    {
        bool dispose = false;
        lock (_gate)
        {
            int count = _inUse[sessions] - 1;
            if (count == 0)
            {
                _inUse.Remove(sessions);
                dispose = _retired.Remove(sessions);
            }
            else
            {
                _inUse[sessions] = count;
            }
        }

        if (dispose)
        {
            sessions.Dispose();
        }
    }

    private sealed class Lease : IDisposable
    {
        private SessionLeases? _owner;
        private readonly ModelSessions _sessions;

        public Lease(SessionLeases owner, ModelSessions sessions)
        {
            _owner = owner;
            _sessions = sessions;
        }

        public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Release(_sessions);
    }
}
