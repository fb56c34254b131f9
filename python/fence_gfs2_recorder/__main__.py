"""``python -m fence_gfs2_recorder``: the fence agent."""

from fence_gfs2_recorder.agent import main

if __name__ == "__main__":
    main()
