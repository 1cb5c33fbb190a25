/** Modified user machines for the viewer's tests: the drawing must follow the machine's definition. */
import { createMachine, type AnyStateMachine } from 'xstate';
import { userMachine } from '../../machines/userMachine.ts';

/** The user machine's config with one more subscription state, `paused`, reached from premium. */
export function machineWithPausedState(): AnyStateMachine {
  const config = userMachine.config as unknown as { states: { subscription: { states: Record<string, { on?: Record<string, unknown> }> } } };
  const subscription = config.states.subscription;
  return createMachine({
    ...(userMachine.config as object),
    states: {
      ...(config.states as object),
      subscription: {
        ...subscription,
        states: {
          ...subscription.states,
          premium: { ...subscription.states.premium, on: { ...subscription.states.premium!.on, subscription_paused: { target: 'paused', guard: 'pausable' } } },
          paused: { on: { subscription_resumed: 'premium' } },
        },
      },
    },
  } as Parameters<typeof createMachine>[0]);
}

