"""The one error the stack raises for the operator: its message is the whole story, in one line
(plus, where a child process failed, the last lines of its log)."""


class StackError(RuntimeError):
    pass
